// The reference of bench/startup.ts: a Deno script that only imports
// commander (the same package and version as sipkit) and prints a version.
import { Command } from "@commander-js/extra-typings";

new Command("hello").version("0.1.0", "-V, --version").parse();
