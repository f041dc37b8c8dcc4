/**
 * Configuration: flags, then `SIPKIT_*` environment variables, then a named
 * profile from the JSON config file, then built-in defaults. Also where the
 * config and state directories are, and how the password is obtained.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { CommandError, EXIT, usageError } from "./_exit.ts";

/** Where environment variables are read from (Deno.env, or a map in tests). */
export interface Env {
  /** The value of a variable, or undefined. */
  get(name: string): string | undefined;
}

/** The config directory: `$SIPKIT_CONFIG_DIR`, `$XDG_CONFIG_HOME/sipkit` or `~/.config/sipkit`. */
export function configDir(env: Env = Deno.env): string {
  const explicit = env.get("SIPKIT_CONFIG_DIR");
  if (explicit) return explicit;
  const xdg = env.get("XDG_CONFIG_HOME");
  if (xdg) return `${xdg}/sipkit`;
  return `${home(env)}/.config/sipkit`;
}

/** The state directory: `$SIPKIT_STATE_DIR`, `$XDG_STATE_HOME/sipkit` or `~/.local/state/sipkit`. */
export function stateDir(env: Env = Deno.env): string {
  const explicit = env.get("SIPKIT_STATE_DIR");
  if (explicit) return explicit;
  const xdg = env.get("XDG_STATE_HOME");
  if (xdg) return `${xdg}/sipkit`;
  return `${home(env)}/.local/state/sipkit`;
}

function home(env: Env): string {
  const h = env.get("HOME");
  if (!h) throw usageError("HOME is not set: set SIPKIT_CONFIG_DIR and SIPKIT_STATE_DIR");
  return h;
}

/** The config file: `$SIPKIT_CONFIG` or `<configDir>/config.json`. */
export function configFile(env: Env = Deno.env): string {
  return env.get("SIPKIT_CONFIG") ?? `${configDir(env)}/config.json`;
}

/** A profile: option values by long option name (snake_case or kebab-case). */
export type Profile = Record<string, string | number | boolean | string[]>;

interface ConfigFile {
  default_profile?: string;
  profiles?: Record<string, Profile>;
}

/**
 * True when the directory that holds `path` is surely not there: its parent
 * lists no entry of that name. Most hosts have no sipkit directory, and a
 * read that fails costs some 0.5 ms more than the listing (a process's first
 * failed file operation), which every one-shot command would pay. False
 * when that cannot be told (the parent cannot be listed either), and where
 * Deno could prompt for reading the parent (stdin and stderr both
 * terminals): the read then decides, as before.
 */
function dirSurelyMissing(path: string): boolean {
  if (Deno.stdin.isTerminal() && Deno.stderr.isTerminal()) return false;
  const file = path.lastIndexOf("/");
  const dir = path.lastIndexOf("/", file - 1);
  if (dir <= 0) return false;
  const name = path.slice(dir + 1, file);
  if (name === "" || name === "." || name === "..") return false;
  try {
    for (const entry of Deno.readDirSync(path.slice(0, dir))) if (entry.name === name) return false;
    return true;
  } catch {
    return false;
  }
}

/** Reads the config file; a missing file is an empty config, a broken one is an error. */
export function loadConfigFile(path = configFile()): ConfigFile {
  if (dirSurelyMissing(path)) return {};
  let text: string;
  try {
    // Read synchronously: a small file read once at start-up, and a process's
    // first asynchronous file operation costs about 0.7 ms more (it starts
    // Deno's blocking-task thread), which every one-shot command would pay.
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return {};
    throw usageError(`Cannot read config file ${path}: ${(e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw usageError(`Cannot parse config file ${path}: ${(e as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw usageError(`Cannot parse config file ${path}: not a JSON object`);
  }
  const cfg = parsed as ConfigFile;
  if (cfg.profiles !== undefined && (typeof cfg.profiles !== "object" || cfg.profiles === null)) {
    throw usageError(`Cannot parse config file ${path}: "profiles" must be an object`);
  }
  return cfg;
}

function camel(name: string): string {
  return name.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** `SIPKIT_AUTH_USER` for `authUser`. */
function envName(attr: string): string {
  // A loop rather than a regular expression: this runs for every option of
  // every command at start, and a regular expression costs some 0.3 ms the
  // first time it runs (compiled then, and again to machine code when it
  // runs twice).
  let name = "SIPKIT_";
  for (let i = 0; i < attr.length; i++) {
    const c = attr.charCodeAt(i);
    name += c >= 65 && c <= 90 ? "_" + attr[i] : attr[i].toUpperCase();
  }
  return name;
}

/** Options whose environment variable would clash with another meaning. */
const NO_ENV = new Set(["profile"]);

/**
 * Fills every option of `cmd` that was not given on the command line from
 * the environment (`SIPKIT_<OPTION>`, e.g. `SIPKIT_USER`, `SIPKIT_AUTH_USER`)
 * or else from the selected profile. Values go through the option's own
 * parser, so they are checked like flags.
 */
export function applyConfig(
  // deno-lint-ignore no-explicit-any
  cmd: Command<any, any, any>,
  env: Env = Deno.env,
): void {
  const opts = cmd.opts() as Record<string, unknown>;
  const path = configFile(env);
  const file = loadConfigFile(path);
  const profileName = (opts.profile as string | undefined) ?? env.get("SIPKIT_PROFILE") ??
    file.default_profile;
  let profile: Profile = {};
  if (profileName !== undefined) {
    const p = file.profiles?.[profileName];
    if (!p) {
      if (opts.profile !== undefined || env.get("SIPKIT_PROFILE") !== undefined) {
        throw usageError(`Unknown profile "${profileName}" (config file ${path})`);
      }
    } else profile = p;
  } else if (file.profiles?.default) {
    profile = file.profiles.default;
  }
  const fromProfile = new Map<string, unknown>();
  for (const [k, v] of Object.entries(profile)) fromProfile.set(camel(k), v);

  // Level each option was set at: 3 flag, 2 environment, 1 profile.
  const level = new Map<string, number>();
  for (const option of cmd.options) {
    const attr = option.attributeName();
    const source = cmd.getOptionValueSource(attr);
    if (source === "cli") {
      level.set(attr, 3);
      continue;
    }
    let raw: unknown;
    let origin = "";
    const envVar = envName(attr);
    if (!NO_ENV.has(attr) && env.get(envVar) !== undefined) {
      raw = env.get(envVar);
      origin = `environment variable ${envVar}`;
      level.set(attr, 2);
    } else if (fromProfile.has(attr)) {
      raw = fromProfile.get(attr);
      origin = `profile option ${attr}`;
      level.set(attr, 1);
    } else continue;
    let value: unknown;
    if (option.isBoolean() && !option.negate) {
      value = typeof raw === "boolean" ? raw : /^(1|true|yes|on)$/i.test(String(raw));
    } else if (option.negate) {
      continue;
    } else if (option.parseArg && typeof raw !== "object") {
      try {
        value = option.parseArg(String(raw), undefined);
      } catch (e) {
        throw usageError(`Invalid ${origin}: ${(e as Error).message}`);
      }
    } else if (Array.isArray(raw)) {
      value = raw.map(String);
    } else {
      value = option.variadic ? String(raw).split(",") : String(raw);
    }
    cmd.setOptionValueWithSource(attr, value, "env");
  }
  // --password-file and --password-env both say where the password is: the
  // one set at the higher level wins (a --password-env flag over a profile's
  // password_file), as for any other setting.
  const fileLevel = level.get("passwordFile") ?? 0;
  const envLevel = level.get("passwordEnv") ?? 0;
  if (fileLevel && envLevel && fileLevel !== envLevel) {
    cmd.setOptionValueWithSource(
      fileLevel > envLevel ? "passwordEnv" : "passwordFile",
      undefined,
      "default",
    );
  }
}

/** Where a password comes from (flags, env, or a prompt). */
export interface PasswordOptions {
  /** Name of an environment variable holding the password. */
  passwordEnv?: string;
  /** Path of a file holding the password (first line). */
  passwordFile?: string;
}

/**
 * Returns a function that yields the password when the stack first needs it:
 * `--password-file`, else `--password-env`, else `$SIPKIT_PASSWORD`, else a
 * prompt without echo when stdin is a terminal. Never from argv.
 */
export function passwordProvider(options: PasswordOptions): () => Promise<string | undefined> {
  let cached: Promise<string | undefined> | undefined;
  return () => (cached ??= obtain(options));
}

async function obtain(options: PasswordOptions): Promise<string | undefined> {
  if (options.passwordFile) {
    try {
      const text = await Deno.readTextFile(options.passwordFile);
      return text.split(/\r?\n/)[0];
    } catch (e) {
      throw new CommandError(
        EXIT.USAGE,
        `Cannot read password file ${options.passwordFile}: ${(e as Error).message}`,
      );
    }
  }
  if (options.passwordEnv) {
    const v = Deno.env.get(options.passwordEnv);
    if (v === undefined) {
      throw usageError(`Environment variable ${options.passwordEnv} (--password-env) is not set`);
    }
    return v;
  }
  const v = Deno.env.get("SIPKIT_PASSWORD");
  if (v !== undefined) return v;
  if (Deno.stdin.isTerminal() && Deno.stderr.isTerminal()) return await promptHidden("Password: ");
  return undefined;
}

async function promptHidden(question: string): Promise<string> {
  const enc = new TextEncoder();
  Deno.stderr.writeSync(enc.encode(question));
  Deno.stdin.setRaw(true);
  const buf = new Uint8Array(1);
  const bytes: number[] = [];
  try {
    for (;;) {
      const n = await Deno.stdin.read(buf);
      if (n === null) break;
      const c = buf[0];
      if (c === 13 || c === 10) break;
      if (c === 3) throw new CommandError(EXIT.INTERRUPTED, "interrupted");
      if (c === 127 || c === 8) bytes.pop();
      else bytes.push(c);
    }
  } finally {
    Deno.stdin.setRaw(false);
    Deno.stderr.writeSync(enc.encode("\n"));
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}
