// The gostocks dashboard: REST for the state at load, server-sent events for what changes.
'use strict';

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
};
// Decimals arrive as exact strings; numbers are only for the chart and the change.
const num = (s) => (s === null || s === undefined ? NaN : Number(s));
const fmt = (v, digits = 4) => (v === null || v === undefined || Number.isNaN(v) ? '–' : Number(v).toLocaleString(undefined, { maximumFractionDigits: digits }));
// Bar starts are whole seconds; a double cannot hold their nanoseconds exactly, so round.
const secs = (ns) => Math.round(Number(ns) / 1e9);

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.key && options.auth) headers.Authorization = `Bearer ${state.key}`;
  if (options.body) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method: options.method || 'GET', headers, body: options.body });
  const body = res.headers.get('content-type')?.includes('json') ? await res.json() : null;
  if (!res.ok) {
    const err = new Error(body?.message || `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

const state = {
  key: sessionStorage.getItem('gostocks.key') || '',
  windows: ['60s', '300s'],
  bars: ['1s', '1m'],
  selected: null,
  bar: '1s',
  symbols: new Map(), // symbol -> {first, last, row}
  stats: new Map(), // `${symbol} ${window}` -> row element
  chartBars: 0,
  ticks: null,
  alertLast: null,
  quoteSymbols: null, // the symbols with quote statistics, or null without a quote feed
};

// ---- symbols and prices ------------------------------------------------------------------
function symbolRow(symbol) {
  let s = state.symbols.get(symbol);
  if (s) return s;
  const button = el('button', { type: 'button', class: 'link', onclick: () => select(symbol) }, symbol);
  const row = el('tr', { 'data-symbol': symbol },
    el('th', { scope: 'row' }, button), el('td', { class: 'num price' }, '–'),
    el('td', { class: 'num change' }, '–'), el('td', { class: 'num pct' }, '–'));
  const body = $('symbols').tBodies[0];
  const after = [...body.rows].find((r) => r.dataset.symbol > symbol);
  body.insertBefore(row, after || null);
  s = { first: null, last: null, row };
  state.symbols.set(symbol, s);
  for (const sel of [$('chart-select'), $('a-symbol')]) {
    const opt = el('option', { value: symbol }, symbol);
    const next = [...sel.options].find((o) => o.value > symbol);
    sel.insertBefore(opt, next || null);
  }
  if (!state.selected) select(symbol);
  return s;
}

function onPrice(p) {
  const s = symbolRow(p.symbol);
  const v = num(p.price);
  if (s.first === null) s.first = v;
  s.last = v;
  const change = v - s.first;
  const cls = change > 0 ? 'up' : change < 0 ? 'down' : '';
  s.row.querySelector('.price').textContent = p.price;
  const c = s.row.querySelector('.change');
  c.textContent = (change > 0 ? '+' : '') + fmt(change, 2);
  c.className = `num change ${cls}`;
  const pct = s.row.querySelector('.pct');
  pct.textContent = s.first ? `${(change / s.first * 100).toFixed(2)}%` : '–';
  pct.className = `num pct ${cls}`;
}

// ---- window stats ------------------------------------------------------------------------
function onStats(r) {
  const key = `${r.symbol} ${r.window}`;
  let row = state.stats.get(key);
  if (!row) {
    row = el('tr', { 'data-key': key }, el('th', { scope: 'row' }, r.symbol), el('td', {}, r.window),
      ...Array.from({ length: 6 }, () => el('td', { class: 'num' }, '–')));
    const body = $('stats').tBodies[0];
    const after = [...body.rows].find((x) => x.dataset.key > key);
    body.insertBefore(row, after || null);
    state.stats.set(key, row);
  }
  const cells = row.cells;
  cells[2].textContent = r.count;
  cells[3].textContent = r.volume;
  cells[4].textContent = fmt(r.sma);
  cells[5].textContent = fmt(r.vwap);
  cells[6].textContent = fmt(r.stddev);
  cells[7].textContent = r.volatility === null ? '–' : Number(r.volatility).toExponential(3);
}

// ---- quotes ------------------------------------------------------------------------------
// The selected symbol's quote statistics, one row per window, from GET /quotes (Redis, kept by
// `run --kafka --quotes-topic`). Polled: a row changes once per grid interval at most.
const share = (v) => (v === null || v === undefined ? '–' : `${(Number(v) * 100).toFixed(2)}%`);
async function loadQuotes() {
  const symbol = state.selected;
  if (!symbol) return;
  $('quotes-symbol').textContent = symbol;
  // Only what GET /status lists: a symbol without quotes would answer 404.
  const none = state.quoteSymbols === null
    ? 'No quotes: they come from `gostocks run --kafka … --quotes-topic quotes --redis …`.'
    : state.quoteSymbols.has(symbol) ? null : `No quotes of ${symbol} yet.`;
  if (none) {
    $('quotes').tBodies[0].replaceChildren();
    $('quotes-state').textContent = none;
    return;
  }
  const rows = [];
  let missing = null;
  for (const w of state.windows) {
    try {
      const q = await api(`/quotes/${encodeURIComponent(symbol)}?window=${encodeURIComponent(w)}`);
      rows.push(el('tr', { 'data-window': w, 'data-time': String(q.time_ns) }, el('th', { scope: 'row' }, w),
        el('td', { class: 'num bid' }, q.bid ?? '–'), el('td', { class: 'num ask' }, q.ask ?? '–'),
        el('td', { class: 'num spread' }, q.spread ?? '–'), el('td', { class: 'num mean-spread' }, fmt(q.mean_spread, 6)),
        el('td', { class: 'num bps' }, fmt(q.mean_spread_bps, 3)), el('td', { class: 'num crossed' }, share(q.crossed_share)),
        el('td', { class: 'num locked' }, share(q.locked_share)), el('td', { class: 'num count' }, String(q.quotes))));
    } catch (e) {
      if (e.status !== 404) throw e;
      missing = e.message;
    }
  }
  if (state.selected !== symbol) return;
  $('quotes').tBodies[0].replaceChildren(...rows);
  $('quotes-state').textContent = rows.length ? '' : missing || '';
}

// ---- chart -------------------------------------------------------------------------------
let chart = null;
let series = null;
function makeChart() {
  const LC = window.LightweightCharts;
  chart = LC.createChart($('chart'), {
    autoSize: true,
    layout: { background: { color: 'transparent' }, textColor: getComputedStyle(document.body).color },
    grid: { vertLines: { color: '#8882' }, horzLines: { color: '#8882' } },
    timeScale: { timeVisible: true, secondsVisible: true },
  });
  const candles = chart.addSeries(LC.CandlestickSeries, { upColor: '#1a7f37', downColor: '#cf222e', borderVisible: false, wickUpColor: '#1a7f37', wickDownColor: '#cf222e' });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.28 } });
  const ema = chart.addSeries(LC.LineSeries, { color: '#d4a017', lineWidth: 2, priceLineVisible: false, lastValueVisible: false, title: 'EMA' });
  const volume = chart.addSeries(LC.HistogramSeries, { priceScaleId: 'volume', priceFormat: { type: 'volume' }, color: '#8888', lastValueVisible: false, priceLineVisible: false });
  chart.priceScale('volume').applyOptions({ scaleMargins: { top: 0.78, bottom: 0 } });
  series = { candles, ema, volume };
}

function barPoint(b) {
  const t = secs(b.start_ns);
  return {
    candle: { time: t, open: num(b.open), high: num(b.high), low: num(b.low), close: num(b.close) },
    ema: b.ema === null ? { time: t } : { time: t, value: b.ema },
    volume: { time: t, value: num(b.volume), color: num(b.close) >= num(b.open) ? '#1a7f3766' : '#cf222e66' },
  };
}

function setChartBars(n) {
  state.chartBars = n;
  $('chart').dataset.bars = String(n);
}

async function loadChart() {
  const symbol = state.selected;
  if (!symbol || !series) return;
  $('chart-symbol').textContent = `${symbol} · ${state.bar}`;
  const bars = await api(`/bars/${encodeURIComponent(symbol)}?bar=${encodeURIComponent(state.bar)}&limit=500`);
  if (symbol !== state.selected) return;
  const points = bars.map(barPoint);
  series.candles.setData(points.map((p) => p.candle));
  series.ema.setData(points.map((p) => p.ema));
  series.volume.setData(points.map((p) => p.volume));
  chart.timeScale().fitContent();
  setChartBars(points.length);
}

function onBar(b) {
  if (!series || b.symbol !== state.selected || b.bar !== state.bar) return;
  const p = barPoint(b);
  const data = series.candles.data();
  if (data.length && data[data.length - 1].time > p.candle.time) return; // older than shown
  const grows = !data.length || data[data.length - 1].time < p.candle.time;
  series.candles.update(p.candle);
  series.ema.update(p.ema);
  series.volume.update(p.volume);
  if (grows) setChartBars(state.chartBars + 1);
}

function select(symbol) {
  state.selected = symbol;
  $('chart-select').value = symbol;
  for (const r of $('symbols').tBodies[0].rows) r.setAttribute('aria-current', String(r.dataset.symbol === symbol));
  loadChart().catch(report);
  loadQuotes().catch(report);
}

function barChoices() {
  const box = $('bar-choices');
  box.replaceChildren(...state.bars.map((b) => el('label', {},
    el('input', { type: 'radio', name: 'bar', value: b, ...(b === state.bar ? { checked: '' } : {}), onchange: () => { state.bar = b; loadChart().catch(report); } }), b)));
}

// ---- the market stream -------------------------------------------------------------------
function connectMarket() {
  const es = new EventSource('/stream?kinds=price,stats,bars');
  es.onopen = () => { $('feed-state').textContent = 'live'; };
  es.onerror = () => { $('feed-state').textContent = 'reconnecting…'; };
  es.addEventListener('price', (e) => onPrice(JSON.parse(e.data)));
  es.addEventListener('stats', (e) => onStats(JSON.parse(e.data)));
  es.addEventListener('bar', (e) => onBar(JSON.parse(e.data)));
  // Too far behind to resume: reload the state, then go on.
  es.addEventListener('reset', () => { loadSnapshot().catch(report); });
  // Dropped as a slow client: the browser reconnects with Last-Event-ID by itself.
  es.addEventListener('dropped', () => { $('feed-state').textContent = 'resuming…'; });
}

async function loadSnapshot() {
  const { symbols } = await api('/symbols');
  await Promise.all(symbols.map(async (s) => {
    symbolRow(s);
    const p = await api(`/price/${encodeURIComponent(s)}`);
    onPrice(p);
  }));
  // Stats rows come over the stream as each grid second ends (a window yet to get a row
  // would answer 404 over REST).
  await loadChart();
}

// ---- health ------------------------------------------------------------------------------
async function pollStatus() {
  try {
    const s = await api('/status');
    const now = performance.now();
    if (state.ticks) {
      const rate = (s.ticks - state.ticks.n) / ((now - state.ticks.at) / 1000);
      $('h-rate').textContent = fmt(rate, 1);
    }
    state.ticks = { n: s.ticks, at: now };
    state.quoteSymbols = s.quote_symbols ? new Set(s.quote_symbols) : null;
    $('h-ticks').textContent = s.ticks.toLocaleString();
    $('h-late').textContent = s.late.toLocaleString();
    $('h-rejected').textContent = s.rejected.toLocaleString();
    $('h-ready').textContent = s.ready ? 'yes' : `no: ${s.reason}`;
    $('h-streams').textContent = s.streams;
    $('sinks').tBodies[0].replaceChildren(...s.sinks.map((k) => el('tr', {},
      el('th', { scope: 'row' }, k.name), el('td', {}, k.state + (k.error ? `: ${k.error}` : '')),
      el('td', { class: 'num' }, `${k.queue_depth}/${k.queue_capacity}`))));
  } catch (e) {
    $('h-ready').textContent = `unreachable (${e.message})`;
  }
}

// ---- alerts ------------------------------------------------------------------------------
function report(e) {
  const m = $('alert-message');
  m.textContent = e.message;
  m.className = 'error';
}

function ruleText(a) {
  let t = a.upper
    ? `${a.symbol} ${a.condition.replaceAll('_', ' ')} [${a.threshold}, ${a.upper}]`
    : `${a.symbol} ${a.condition.replaceAll('_', ' ')} ${a.threshold}${a.condition === 'spread_above' ? ' bps' : ''}`;
  if (a.window) t += ` (${a.window})`;
  return t;
}

function alertRow(a) {
  const stateCell = el('td', {}, el('span', { class: `badge ${a.state}` }, a.state));
  if (a.paused_reason) stateCell.append(` (${a.paused_reason})`);
  const actions = el('td', {});
  if (a.state !== 'active') {
    actions.append(el('button', { type: 'button', onclick: () => resume(a.id), 'aria-label': `Resume alert ${a.id}` }, 'Resume'), ' ');
  }
  actions.append(el('button', { type: 'button', onclick: () => remove(a.id), 'aria-label': `Delete alert ${a.id}` }, 'Delete'));
  const mode = a.mode + (a.bar ? ` ${a.bar}` : '') + (a.cooldown_ns ? ` ${a.cooldown_ns / 1e9}s` : '') + (a.storm === 'off' ? ', storm guard off' : '');
  return el('tr', { 'data-alert': a.id }, el('td', {}, el('code', {}, a.id)), el('td', {}, ruleText(a)), el('td', {}, mode), stateCell, actions);
}

async function listAlerts() {
  const all = [];
  let token = null;
  do {
    const page = await api(`/alerts?page_size=500${token ? `&page_token=${encodeURIComponent(token)}` : ''}`, { auth: true });
    all.push(...page.alerts);
    token = page.next_page_token;
  } while (token);
  $('alerts').tBodies[0].replaceChildren(...all.map(alertRow));
  $('alerts').hidden = false;
}

async function resume(id) {
  try { await api(`/alerts/${encodeURIComponent(id)}/resume`, { method: 'POST', auth: true }); await listAlerts(); } catch (e) { report(e); }
}

async function remove(id) {
  try { await api(`/alerts/${encodeURIComponent(id)}`, { method: 'DELETE', auth: true }); await listAlerts(); } catch (e) { report(e); }
}

function alertBody() {
  const v = (id) => $(id).value.trim();
  const body = { symbol: v('a-symbol'), condition: v('a-condition'), threshold: v('a-threshold'), mode: v('a-mode') };
  if (!$('a-window-label').hidden) body.window = v('a-window');
  if (!$('a-upper-label').hidden) body.upper = v('a-upper');
  if (!$('a-bar-label').hidden) body.bar = v('a-bar');
  if (!$('a-hysteresis-label').hidden && v('a-hysteresis')) body.hysteresis = v('a-hysteresis');
  if (!$('a-cooldown-label').hidden && v('a-cooldown')) body.cooldown = v('a-cooldown');
  const storm = v('a-storm');
  if (storm === 'off') body.storm = 'off';
  if (storm === 'custom') body.storm = { max_events: Number(v('a-storm-max')), within: v('a-storm-within') };
  // Decimals travel as JSON strings, so they stay exact.
  return JSON.stringify(body);
}

function syncForm() {
  const cond = $('a-condition').value;
  const mode = $('a-mode').value;
  $('a-window-label').hidden = !(cond.startsWith('sma_') || cond.startsWith('vwap_') || cond.startsWith('change_pct_') || cond === 'volatility_above' || cond === 'volume_above');
  const channel = ['enters_channel', 'exits_channel', 'inside', 'outside'].includes(cond);
  $('a-upper-label').hidden = !channel;
  $('a-upper').required = channel;
  $('a-threshold-name').textContent = channel ? 'Lower' : cond === 'spread_above' ? 'Spread (bps)' : 'Threshold';
  $('a-bar-label').hidden = !mode.startsWith('once_per_bar');
  $('a-hysteresis-label').hidden = mode !== 'rearm';
  $('a-cooldown-label').hidden = !(mode === 'rearm' || mode === 'once_per_interval');
  $('a-cooldown').required = mode === 'once_per_interval';
  $('a-storm-custom').hidden = $('a-storm').value !== 'custom';
}

async function createAlert(ev) {
  ev.preventDefault();
  const m = $('alert-message');
  try {
    const a = await api('/alerts', { method: 'POST', auth: true, body: alertBody() });
    m.textContent = a.warning ? `Created ${a.id}. Warning: ${a.warning}` : `Created ${a.id}.`;
    m.className = a.warning ? 'warning' : '';
    await listAlerts();
  } catch (e) { report(e); }
}

function onAlertEvent(e) {
  state.alertLast = e.id;
  $('events-title').hidden = false;
  const when = new Date(Number(e.time_ns) / 1e6).toLocaleTimeString();
  const what = e.kind === 'paused' ? `paused (${e.reason}): the storm guard stopped it; Resume it above` : `fired at ${e.price}`;
  const li = el('li', { 'data-event': String(e.id), 'data-alert': e.alert_id }, `${when} · ${e.symbol} · `, el('code', {}, e.alert_id), ` ${what}`, el('span', { class: 'deliveries' }));
  $('events').prepend(li);
  while ($('events').children.length > 200) $('events').lastChild.remove();
  if (e.kind === 'paused' || e.kind === 'fired') listAlerts().catch(report);
}

function onDelivery(d) {
  const li = $('events').querySelector(`li[data-event="${d.event_id}"] .deliveries`);
  if (!li) return;
  let span = li.querySelector(`[data-channel="${d.channel_id}"]`);
  if (!span) { span = el('span', { 'data-channel': d.channel_id }); li.append(span); }
  span.textContent = ` · ${d.channel_id}: ${d.state}${d.last_status ? ` (${d.last_status})` : ''}`;
}

let alertStream = null;
async function connectAlerts() {
  if (alertStream) alertStream.close();
  const { token } = await api('/alerts/stream-token', { method: 'POST', auth: true });
  const after = state.alertLast === null ? '' : `&after=${state.alertLast}`;
  const es = new EventSource(`/alerts/stream?token=${encodeURIComponent(token)}${after}`);
  alertStream = es;
  es.addEventListener('alert', (e) => onAlertEvent(JSON.parse(e.data)));
  es.addEventListener('delivery', (e) => onDelivery(JSON.parse(e.data)));
  // The token lasts a minute; once the browser cannot reopen with it, get a new one.
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED && alertStream === es) setTimeout(() => connectAlerts().catch(report), 1000);
  };
}

async function useKey(ev) {
  if (ev) ev.preventDefault();
  const typed = $('api-key').value.trim();
  if (typed) state.key = typed;
  if (!state.key) return;
  try {
    await listAlerts();
    sessionStorage.setItem('gostocks.key', state.key);
    $('key-state').textContent = 'Key accepted: your alerts and their events are below.';
    $('key-state').className = '';
    $('alert-form').hidden = false;
    await connectAlerts();
  } catch (e) {
    $('key-state').textContent = `That key was refused: ${e.message}`;
    $('key-state').className = 'error';
  }
}

// ---- start -------------------------------------------------------------------------------
async function start() {
  const s = await api('/status');
  state.windows = s.windows;
  state.bars = s.bars;
  state.bar = s.bars[0];
  state.quoteSymbols = s.quote_symbols ? new Set(s.quote_symbols) : null;
  $('a-window').replaceChildren(...s.windows.map((w) => el('option', {}, w)));
  $('a-bar').replaceChildren(...s.bars.map((b) => el('option', {}, b)));
  barChoices();
  makeChart();
  // Subscribe first, so nothing falls between the snapshot and the feed.
  connectMarket();
  await loadSnapshot();
  pollStatus();
  setInterval(pollStatus, 2000);
  setInterval(() => loadQuotes().catch(report), 2000);
  $('chart-select').addEventListener('change', (e) => select(e.target.value));
  $('key-form').addEventListener('submit', useKey);
  $('alert-form').addEventListener('submit', createAlert);
  for (const id of ['a-condition', 'a-mode', 'a-storm']) $(id).addEventListener('change', syncForm);
  syncForm();
  if (state.key) useKey();
}

start().catch((e) => { $('feed-state').textContent = `failed to start: ${e.message}`; });
