/**
 * Audio helpers for call tests: tone WAV files made with sox, a WAV reader
 * (16-bit PCM, any channel count, mixed down to mono), and sox's own
 * analysis of a file (`stat`), an independent check of what sipkit's
 * detector reports.
 *
 * @module
 */

import { assertPeer } from "./peers/require.ts";

/** Decoded WAV audio, mixed down to mono, samples in [-1, 1). */
export interface WavAudio {
  /** Samples per second. */
  sampleRate: number;
  /** Channels in the file (the samples are their mean). */
  channels: number;
  /** Mono samples. */
  samples: Float32Array;
}

/** Options of {@linkcode makeToneWav}. */
export interface ToneWavOptions {
  /** Seconds of audio (default 30). */
  seconds?: number;
  /** Sample rate (default 8000). */
  rate?: number;
  /** Channels (default 1). */
  channels?: number;
  /** Amplitude 0..1 (default 0.5). */
  volume?: number;
}

/** Writes a sine tone of `hz` Hz to `path` as 16-bit PCM WAV with sox. */
export async function makeToneWav(
  path: string,
  hz: number,
  options: ToneWavOptions = {},
): Promise<void> {
  const sox = assertPeer("sox", "sox");
  const args = [
    "-n",
    "-r",
    String(options.rate ?? 8000),
    "-c",
    String(options.channels ?? 1),
    "-b",
    "16",
    path,
    "synth",
    String(options.seconds ?? 30),
    "sine",
    String(hz),
    "vol",
    String(options.volume ?? 0.5),
  ];
  const out = await new Deno.Command(sox, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`sox ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Parses a RIFF/WAVE file of 16-bit PCM; throws on anything else. */
export function parseWav(bytes: Uint8Array): WavAudio {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at: number) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") {
    throw new SyntaxError("not a RIFF/WAVE file");
  }
  let offset = 12;
  let channels = 0;
  let sampleRate = 0;
  let bits = 0;
  let format = 0;
  while (offset + 8 <= bytes.length) {
    const id = tag(offset);
    let size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (id === "fmt ") {
      format = view.getUint16(body, true);
      channels = view.getUint16(body + 2, true);
      sampleRate = view.getUint32(body + 4, true);
      bits = view.getUint16(body + 14, true);
      // WAVE_FORMAT_EXTENSIBLE carries the real format in its sub-format GUID.
      if (format === 0xfffe && size >= 26) format = view.getUint16(body + 24, true);
    } else if (id === "data") {
      if (format !== 1 || bits !== 16 || channels < 1) {
        throw new SyntaxError(`unsupported WAV: format ${format}, ${bits} bits, ${channels} ch`);
      }
      // A header written before the end (recording still running) may say 0 or too much.
      if (size === 0 || body + size > bytes.length) size = bytes.length - body;
      const frames = Math.floor(size / (2 * channels));
      const samples = new Float32Array(frames);
      for (let i = 0; i < frames; i++) {
        let sum = 0;
        for (let c = 0; c < channels; c++) {
          sum += view.getInt16(body + (i * channels + c) * 2, true);
        }
        samples[i] = sum / channels / 32768;
      }
      return { sampleRate, channels, samples };
    }
    offset = body + size + (size & 1);
  }
  throw new SyntaxError("WAV file without a data chunk");
}

/** Reads and parses a WAV file (see {@linkcode parseWav}). */
export async function readWav(path: string): Promise<WavAudio> {
  return parseWav(await Deno.readFile(path));
}

/** Root mean square of `samples` (0 for none). */
export function rms(samples: Float32Array): number {
  if (samples.length === 0) return 0;
  let sum = 0;
  for (const s of samples) sum += s * s;
  return Math.sqrt(sum / samples.length);
}

/** What sox's `stat` effect says about a file. */
export interface SoxStat {
  /** Length in seconds. */
  seconds: number;
  /** RMS amplitude (0..1). */
  rmsAmplitude: number;
  /** sox's rough frequency estimate in Hz (zero crossings). */
  roughFrequency: number;
}

/**
 * Runs `sox <path> -n [trim <fromSeconds>] stat` and parses its report
 * (written on stderr).
 */
export async function soxStat(path: string, fromSeconds = 0): Promise<SoxStat> {
  const sox = assertPeer("sox", "sox");
  const trim = fromSeconds > 0 ? ["trim", fromSeconds.toFixed(3)] : [];
  const out = await new Deno.Command(sox, {
    args: [path, "-n", ...trim, "stat"],
    stdout: "null",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`sox ${path} -n stat failed: ${text}`);
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s*(\\S+)`, "m").exec(text);
    return match ? Number(match[1]) : NaN;
  };
  return {
    seconds: field("Length \\(seconds\\)"),
    rmsAmplitude: field("RMS\\s+amplitude"),
    roughFrequency: field("Rough\\s+frequency"),
  };
}

/** A private ALSA configuration with devices backed by files, for `--device` tests. */
export interface PrivateAlsa {
  /** Environment for the process that opens the devices (`ALSA_CONFIG_PATH`). */
  env: Record<string, string>;
  /**
   * PCM `sipkit_file`: playback is written to `played` (WAV), capture reads
   * `capture` (raw signed 16-bit little-endian mono at 8 kHz). Neither is
   * paced in real time.
   */
  fileDevice: string;
  /** PCM `sipkit_null`: playback discarded, capture silent (ALSA `null` plugin). */
  nullDevice: string;
  /** The WAV file the file device's playback writes. */
  played: string;
  /** Removes the configuration and its files. */
  cleanup(): Promise<void>;
}

/**
 * Writes a private ALSA configuration (the system's alsa.conf plus a file of
 * our own, through `ALSA_CONFIG_PATH`) with a `file` PCM and a `null` PCM, so
 * that a test can send audio through ALSA and sox without a sound card. The
 * capture side plays a `captureHz` tone (`captureSeconds` long, default 60).
 * Open the device at 8000 Hz mono S16_LE (sox: `-r 8000 -c 1 -b 16 -e
 * signed-integer -t alsa <device>`), or ALSA will resample.
 */
export async function privateAlsa(
  captureHz: number,
  options: { captureSeconds?: number } = {},
): Promise<PrivateAlsa> {
  const sox = assertPeer("sox", "sox");
  const dir = await Deno.makeTempDir({ prefix: `sipkit-alsa-${Deno.pid}-` });
  const capture = `${dir}/capture.raw`;
  const played = `${dir}/played.wav`;
  const args = [
    "-n",
    "-r",
    "8000",
    "-c",
    "1",
    "-b",
    "16",
    "-e",
    "signed-integer",
    "-t",
    "raw",
    capture,
    "synth",
    String(options.captureSeconds ?? 60),
    "sine",
    String(captureHz),
    "vol",
    "0.5",
  ];
  const out = await new Deno.Command(sox, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw new Error(`sox failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  const quote = (s: string) => JSON.stringify(s);
  await Deno.writeTextFile(
    `${dir}/asound.conf`,
    [
      "pcm.sipkit_file {",
      "  type file",
      '  slave.pcm "null"',
      `  file ${quote(played)}`,
      '  format "wav"',
      `  infile ${quote(capture)}`,
      "}",
      "pcm.sipkit_null {",
      "  type null",
      "}",
      "",
    ].join("\n"),
  );
  const system = ["/usr/share/alsa/alsa.conf", "/etc/alsa/alsa.conf"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  }) ?? "/usr/share/alsa/alsa.conf";
  return {
    env: { ALSA_CONFIG_PATH: `${system}:${dir}/asound.conf` },
    fileDevice: "sipkit_file",
    nullDevice: "sipkit_null",
    played,
    cleanup: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}
