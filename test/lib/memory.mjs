// Memory of one process as Linux accounts it, for bounds in the integration
// tests. The private (anonymous) resident memory is what a leak or an
// unbounded buffer grows; total RSS (VmRSS/VmHWM) also counts the pages of
// PostgreSQL's shared memory and of mapped libraries the process touches,
// which vary from machine to machine and say nothing about our buffers.
import { readFileSync } from 'node:fs';

/** memoryOf(pid) -> {rss, anon, shmem, file, hwm} in MB, from /proc/PID/status */
export function memoryOf(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const mb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) / 1024;
  return { rss: mb('VmRSS'), anon: mb('RssAnon'), shmem: mb('RssShmem'), file: mb('RssFile'), hwm: mb('VmHWM') };
}

/**
 * sampleMemory(pid, {everyMs=10}) -> {stop() -> {before, peak, grown}}
 * Samples memoryOf(pid) every everyMs until stop(): before = the first
 * sample, peak = the largest of each field, grown = peak - before per field.
 * The kernel keeps a peak only of the total (VmHWM); the private peak is
 * sampled, and a buffer held for less than everyMs could be missed.
 */
export function sampleMemory(pid, { everyMs = 10 } = {}) {
  const before = memoryOf(pid);
  const peak = { ...before };
  const take = () => {
    let m;
    try { m = memoryOf(pid); } catch { return; } // gone: the caller's asserts say why
    for (const k of Object.keys(peak)) peak[k] = Math.max(peak[k], m[k]);
  };
  const timer = setInterval(take, everyMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      const grown = Object.fromEntries(Object.keys(peak).map((k) => [k, peak[k] - before[k]]));
      return { before, peak, grown };
    },
  };
}
