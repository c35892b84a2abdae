/**
 * A LinuxPool call through a pool worker's channel: the request (argv/env per call, stdin) in
 * the input area, the result (exit, signal, stdout, stderr, stats) in the output area. Both are
 * length-prefixed binary records whose every length is checked against the buffer they are in.
 *
 *   request: u32 metaLen | meta JSON {argv?, env?} | stdin
 *   result:  u32 exitCode+1 (0: none) | u32 signal | u32 stdoutLen | u32 stderrLen | u32 statsLen
 *            | f64 stdoutDropped | f64 stderrDropped | stdout | stderr | stats JSON
 */
import type { LinuxCallInput, LinuxCallResult, LinuxStart } from './linux-vm.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const RESULT_HEADER = 5 * 4 + 2 * 8;
/** Room the result needs beyond stdout and stderr: the header and the stats. */
export const RESULT_OVERHEAD = 64 * 1024;
/** Room the request needs beyond stdin: argv and env (MAX_ARG_BYTES, twice for JSON escapes). */
export const REQUEST_OVERHEAD = 1024 * 1024;

export function encodeRunRequest(stdin: Uint8Array, meta: { argv?: readonly string[]; env?: readonly string[] }): Uint8Array {
  const json = meta.argv || meta.env ? enc.encode(JSON.stringify(meta)) : new Uint8Array(0);
  const out = new Uint8Array(4 + json.length + stdin.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 4);
  out.set(stdin, 4 + json.length);
  return out;
}

export function decodeRunRequest(bytes: Uint8Array): LinuxCallInput {
  if (bytes.length < 4) throw new RangeError('run request: shorter than its header');
  const metaLen = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
  if (4 + metaLen > bytes.length) throw new RangeError('run request: metadata runs past its end');
  const stdin = bytes.subarray(4 + metaLen);
  if (metaLen === 0) return { stdin };
  const meta = JSON.parse(dec.decode(bytes.subarray(4, 4 + metaLen))) as { argv?: string[]; env?: string[] };
  return { stdin, ...(meta.argv ? { argv: meta.argv } : {}), ...(meta.env ? { env: meta.env } : {}) };
}

export interface DecodedRunResult extends Omit<LinuxCallResult, 'stats'> {
  stats: LinuxCallResult['stats'] & { start: LinuxStart };
}

export function encodeRunResult(r: LinuxCallResult, start: LinuxStart): Uint8Array {
  const stats = enc.encode(JSON.stringify({ ...r.stats, start, ...(r.fault ? { fault: r.fault } : {}) }));
  const out = new Uint8Array(RESULT_HEADER + r.stdout.length + r.stderr.length + stats.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, r.exitCode === null ? 0 : r.exitCode + 1, true);
  v.setUint32(4, r.signal, true);
  v.setUint32(8, r.stdout.length, true);
  v.setUint32(12, r.stderr.length, true);
  v.setUint32(16, stats.length, true);
  v.setFloat64(20, r.stdoutDropped, true);
  v.setFloat64(28, r.stderrDropped, true);
  out.set(r.stdout, RESULT_HEADER);
  out.set(r.stderr, RESULT_HEADER + r.stdout.length);
  out.set(stats, RESULT_HEADER + r.stdout.length + r.stderr.length);
  return out;
}

export function decodeRunResult(bytes: Uint8Array): DecodedRunResult {
  if (bytes.length < RESULT_HEADER) throw new RangeError('run result: shorter than its header');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [code, signal, outLen, errLen, statsLen] = [0, 4, 8, 12, 16].map((o) => v.getUint32(o, true)) as [number, number, number, number, number];
  if (RESULT_HEADER + outLen + errLen + statsLen > bytes.length) throw new RangeError('run result: lengths run past its end');
  let at = RESULT_HEADER;
  const stdout = bytes.slice(at, (at += outLen));
  const stderr = bytes.slice(at, (at += errLen));
  const { fault, ...stats } = JSON.parse(dec.decode(bytes.subarray(at, at + statsLen))) as DecodedRunResult['stats'] & { fault?: string };
  return { stdout, stderr, exitCode: code === 0 ? null : code - 1, signal, ...(fault ? { fault } : {}), stdoutDropped: v.getFloat64(20, true), stderrDropped: v.getFloat64(28, true), stats };
}
