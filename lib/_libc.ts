/**
 * libc through FFI, for the few socket options and look-ups Deno does not
 * offer (lib/sip's ICMP errors and receive buffers, lib/mobility's route
 * look-ups). Linux only; nothing is opened without `--allow-ffi`.
 *
 * @module
 */

/**
 * Opens libc with `symbols`, or returns null: on another system than Linux,
 * without the FFI permission, or when no libc can be opened. The caller
 * keeps the handle (one per symbol set) and adds its own checks, e.g. the
 * struct layouts it relies on.
 *
 * @example
 * ```ts
 * import { openLibc } from "./_libc.ts";
 * const libc = openLibc({ getpid: { parameters: [], result: "i32" } });
 * if (libc) console.log(libc.symbols.getpid());
 * ```
 */
export function openLibc<S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): Deno.DynamicLibrary<S> | null {
  if (Deno.build.os !== "linux") return null;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
  } catch {
    return null;
  }
  for (const name of ["libc.so.6", "libc.so"]) {
    try {
      return Deno.dlopen(name, symbols);
    } catch { /* try the next name */ }
  }
  return null;
}
