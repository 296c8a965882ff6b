// Renders the benchmark's PNG with pureimage (pure JavaScript, no browser):
// left, horizontal bars of throughput (changes/s, log scale) per system and
// endpoint; right, commit->ack latency p50/p99 at the fixed offered rate.
import { createWriteStream, existsSync } from 'node:fs';
import * as PImage from 'pureimage';

const FONT_PATHS = [
  '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf',
  '/usr/share/fonts/TTF/DejaVuSans.ttf',
  '/usr/share/fonts/dejavu/DejaVuSans.ttf',
];

export const COLORS = {
  ceiling: '#7f8c8d',
  cosmos_sink: '#1f6fb2',
  diy: '#e67e22',
  endpoint: '#8e44ad',
  anchor: '#b8b8b8',
  p50: '#7fb3e0',
  p99: '#1f4e79',
  grid: '#e3e3e3',
  text: '#222222',
  muted: '#666666',
};

let fontReady = null;
async function loadFont() {
  fontReady ??= (async () => {
    const p = FONT_PATHS.find((f) => existsSync(f));
    if (!p) throw new Error(`no TrueType font found (install fonts-dejavu-core): looked in ${FONT_PATHS.join(', ')}`);
    const f = PImage.registerFont(p, 'BenchSans');
    await f.load();
    return 'BenchSans';
  })();
  return fontReady;
}

const fmt = (v) => (v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e4 ? `${(v / 1e3).toFixed(0)}k` : v >= 1e3 ? `${(v / 1e3).toFixed(1)}k` : `${Math.round(v)}`);

/**
 * renderPlot(file, {title, subtitle, throughput:[{label, value, kind}], latency:[{label, p50, p99, kind}],
 *   latencyTitle}) -> file
 * kind picks the bar colour (ceiling, cosmos_sink, diy, endpoint, anchor).
 */
export async function renderPlot(file, { title, subtitle = '', throughput, latency, latencyTitle }) {
  const family = await loadFont();
  const W = 1500;
  const rowH = 26;
  const top = 92;
  // rows of one group (t.group) sit together; groups are 14 px apart
  const gap = 14;
  const ys = [];
  let yy = top;
  throughput.forEach((t, i) => {
    if (i > 0 && t.group !== throughput[i - 1].group) yy += gap;
    ys.push(yy);
    yy += rowH;
  });
  const leftH = yy + 70;
  const rightH = top + latency.length * (rowH * 2 + 10) + 70;
  const H = Math.max(leftH, rightH, 420);
  const img = PImage.make(W, H);
  const ctx = img.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, W, H);
  const text = (s, x, y, { size = 14, color = COLORS.text, align = 'left' } = {}) => {
    ctx.font = `${size}px ${family}`;
    ctx.fillStyle = color;
    let xx = x;
    if (align !== 'left') {
      const w = ctx.measureText(s).width;
      xx = align === 'right' ? x - w : x - w / 2;
    }
    ctx.fillText(s, xx, y);
  };
  const rect = (x, y, w, h, color) => { ctx.fillStyle = color; ctx.fillRect(Math.round(x), Math.round(y), Math.max(1, Math.round(w)), Math.round(h)); };

  text(title, 20, 30, { size: 22 });
  if (subtitle) text(subtitle, 20, 54, { size: 13, color: COLORS.muted });

  // ---- left panel: throughput, log10 scale ----
  const lx0 = 380; // bar origin
  const lx1 = 930; // right end of the axis
  const vals = throughput.map((t) => t.value).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.max(1, Math.min(...vals, 1000)))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...vals, 10))));
  const xOf = (v) => lx0 + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (lx1 - lx0);
  text('Throughput, changes/s (log scale)', 20, top - 14, { size: 15 });
  const axisBottom = yy + 4;
  for (let d = lo; d <= hi; d *= 10) {
    const x = xOf(d);
    rect(x, top - 4, 1, axisBottom - top + 4, COLORS.grid);
    text(fmt(d), x, axisBottom + 16, { size: 12, color: COLORS.muted, align: 'center' });
  }
  throughput.forEach((t, i) => {
    const y = ys[i];
    text(t.label, lx0 - 8, y + 16, { size: 13, align: 'right', color: t.kind === 'anchor' ? COLORS.muted : COLORS.text });
    if (t.value > 0) {
      rect(lx0, y + 3, xOf(t.value) - lx0, rowH - 8, COLORS[t.kind] ?? COLORS.ceiling);
      text(fmt(t.value), xOf(t.value) + 5, y + 16, { size: 12 });
    } else {
      text('n/a', lx0 + 5, y + 16, { size: 12, color: COLORS.muted });
    }
  });
  // legend
  const legend = [['decode ceiling', 'ceiling'], ['cosmos_sink', 'cosmos_sink'], ['DIY peer', 'diy'], ['null endpoint capacity', 'endpoint'], ['published (other hardware)', 'anchor']];
  let lxL = 20;
  legend.forEach(([name, kind]) => {
    rect(lxL, H - 30, 14, 14, COLORS[kind]);
    text(name, lxL + 20, H - 18, { size: 12 });
    lxL += 40 + name.length * 7.2;
  });

  // ---- right panel: latency p50/p99 (linear) ----
  const rx0 = 1200;
  const rx1 = 1470;
  // log10 scale from 1 ms to the decade above the largest value
  const latHi = Math.pow(10, Math.ceil(Math.log10(Math.max(100, ...latency.flatMap((l) => [l.p50 ?? 0, l.p99 ?? 0])))));
  const scale = (v) => ((rx1 - 40 - rx0) * Math.log10(Math.max(1, v))) / Math.log10(latHi);
  text(latencyTitle ?? 'Commit→ack latency, ms (log scale)', 990, top - 14, { size: 15 });
  const latAxis = top + latency.length * (rowH * 2 + 10);
  for (let d = 1; d <= latHi; d *= 10) {
    rect(rx0 + scale(d), top - 4, 1, latAxis - top, COLORS.grid);
    text(`${d}`, rx0 + scale(d), latAxis + 28, { size: 11, color: COLORS.muted, align: 'center' });
  }
  latency.forEach((l, i) => {
    const y = top + i * (rowH * 2 + 10);
    text(l.label, rx0 - 8, y + 16, { size: 13, align: 'right', color: l.kind === 'anchor' ? COLORS.muted : COLORS.text });
    [['p50', l.p50], ['p99', l.p99]].forEach(([q, v], j) => {
      const yy = y + j * rowH;
      if (v === null || v === undefined) { text(`${q} n/a`, rx0 + 4, yy + 16, { size: 12, color: COLORS.muted }); return; }
      void j;
      rect(rx0, yy + 3, Math.max(2, scale(v)), rowH - 8, l.kind === 'anchor' ? COLORS.anchor : COLORS[q]);
      text(`${q} ${v < 10 ? v.toFixed(1) : Math.round(v)}`, rx0 + Math.max(2, scale(v)) + 5, yy + 16, { size: 12 });
    });
  });
  // 50 ms target line
  const tx = rx0 + scale(50);
  const latBottom = top + latency.length * (rowH * 2 + 10);
  rect(tx, top - 4, 1, latBottom - top, '#c0392b');
  text('50 ms target', tx, latBottom + 14, { size: 11, color: '#c0392b', align: 'center' });

  await PImage.encodePNGToStream(img, createWriteStream(file));
  return file;
}
