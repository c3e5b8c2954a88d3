"""The review app's one page: HTML, CSS and the script of the keyboard-driven flow.

The script builds the page from the app's JSON with ``textContent`` only (file names,
reasons and notes are data, never markup), and sends decisions with the CSRF token.
Keys, as in annotation tools: ``j``/``→`` next, ``k``/``←`` previous, ``r`` real,
``s`` synthetic, ``u`` unsure (each saves with the note and moves on), ``n`` the note,
``Esc`` or ``Enter`` leave the note, ``g`` the next undecided file, ``?`` the help.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

__all__ = ["render_page"]

_CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,sans-serif;color:#1b1f24;
display:flex;height:100vh}
#side{width:300px;border-right:1px solid #d0d7de;overflow:auto;background:#f6f8fa}
#side h1{font-size:15px;margin:10px 12px 2px}#side .muted{margin:0 12px 8px}
#list{list-style:none;margin:0;padding:0}
#list li{padding:5px 12px;cursor:pointer;border-bottom:1px solid #eaeef2;display:flex;gap:6px;
align-items:center;font-size:12.5px}
#list li.cur{background:#ddf4ff}#list li .name{overflow:hidden;text-overflow:ellipsis;
white-space:nowrap;flex:1}
#main{flex:1;overflow:auto;padding:12px 20px}
.muted{color:#57606a}.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;
white-space:nowrap}
.v-synthetic{background:#cf222e;color:#fff}.v-likely-synthetic{background:#fb8f44}
.v-needs-review{background:#8250df;color:#fff}.v-likely-authentic{background:#2da44e;color:#fff}
.v-no-evidence{background:#d0d7de}.v-error{background:#24292f;color:#fff}
.l-real{background:#2da44e;color:#fff}.l-synthetic{background:#cf222e;color:#fff}
.l-unsure{background:#d4a72c}
#media img{max-width:100%;max-height:420px;border:1px solid #d0d7de;margin:0 8px 8px 0}
#thumb{min-width:256px;image-rendering:pixelated}
#frames img{height:150px;image-rendering:pixelated}
.cols{display:flex;gap:24px;flex-wrap:wrap}.cols>div{flex:1;min-width:360px}
#main h2{margin:.2em 0}#main h3{margin:.6em 0 .3em;font-size:14px}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #d0d7de;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}
ul.tree{margin:.2em 0;padding-left:18px}ul.tree li{margin:1px 0}
#decide{position:sticky;bottom:0;background:#fff;border-top:1px solid #d0d7de;padding:10px 0;
display:flex;gap:10px;align-items:flex-start}
#decide button{font-size:14px;padding:6px 12px;border-radius:6px;border:1px solid #d0d7de;
cursor:pointer}#decide textarea{flex:1;height:48px;font:inherit}
kbd{border:1px solid #d0d7de;border-bottom-width:2px;border-radius:4px;padding:0 4px;
font-size:12px;background:#f6f8fa}
#status{min-height:1.4em}#help{display:none}#help.show{display:block}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:.4em .7em;border-radius:4px}
"""

_SCRIPT = r"""
const CFG = JSON.parse(document.getElementById('cfg').textContent);
const $ = (id) => document.getElementById(id);
const withToken = (u) =>
  u + (u.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(CFG.token);
let files = [], cur = -1, saved = 0, busy = false;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function pill(text, prefix) { return el('span', text, 'pill ' + prefix + text); }
function base(p) { return p.split('/').pop(); }

async function getJSON(u) {
  const r = await fetch(withToken(u));
  if (!r.ok) throw new Error((await r.json()).detail || r.statusText);
  return r.json();
}

function drawList() {
  const ul = $('list'); ul.replaceChildren();
  files.forEach((f, i) => {
    const li = el('li'); li.dataset.index = i;
    if (i === cur) li.className = 'cur';
    li.append(pill(f.verdict, 'v-'), el('span', base(f.path), 'name'));
    if (f.label) li.append(pill(f.label, 'l-'));
    li.onclick = () => show(i);
    ul.append(li);
  });
  const done = files.filter((f) => f.label).length;
  $('progress').textContent = done + ' of ' + files.length + ' decided · reviewer ' + CFG.reviewer;
  const c = ul.querySelector('li.cur'); if (c) c.scrollIntoView({block: 'nearest'});
}

function tree(value) {
  // the provenance record as nested lists: manifests, their actions and ingredients
  if (value === null || value === undefined || value === '' ||
      (Array.isArray(value) && !value.length)) return null;
  if (typeof value !== 'object') return el('span', value);
  const ul = el('ul', null, 'tree');
  const entries = Array.isArray(value)
    ? value.map((v, i) => [String(i + 1), v]) : Object.entries(value);
  for (const [k, v] of entries) {
    const sub = tree(v); if (!sub) continue;
    const li = el('li'); li.append(el('b', k + ': ')); li.append(sub); ul.append(li);
  }
  return ul.children.length ? ul : null;
}

async function show(i) {
  if (i < 0 || i >= files.length) return;
  cur = i; $('note').value = ''; drawList();
  const d = await getJSON('/api/item/' + i);
  if (d.index !== cur) return;
  const r = d.record, m = $('main-body'); m.replaceChildren();
  const head = el('h2');
  head.append(pill(r.verdict || 'error', 'v-'), ' ', el('span', base(r.path)));
  m.append(head);
  const where = d.flagged ? ' · in the report\'s "look at these first"' : '';
  m.append(el('p', r.path + where, 'muted'));
  if (d.media_problem) m.append(el('p', d.media_problem, 'warn'));
  const media = el('div'); media.id = 'media';
  if (!d.media_problem) {
    if (r.kind === 'video') {
      const fr = el('div'); fr.id = 'frames';
      for (let k = 0; k < d.frames; k++) {
        const img = el('img'); img.alt = 'frame ' + (k + 1);
        img.src = withToken('/media/' + i + '/frame/' + k);
        fr.append(img);
      }
      media.append(el('h3', 'Frames'), fr);
    } else {
      const img = el('img'); img.alt = 'thumbnail'; img.id = 'thumb';
      img.src = withToken('/media/' + i + '/thumb');
      media.append(img);
    }
    for (const det of d.heatmaps) {
      const img = el('img'); img.alt = 'heatmap ' + det; img.className = 'heatmap';
      img.src = withToken('/media/' + i + '/heatmap/' + encodeURIComponent(det));
      media.append(el('h3', 'Heatmap · ' + det), img);
    }
  }
  // the pictures on the left, the evidence beside them
  const cols = el('div', null, 'cols'), right = el('div');
  cols.append(media, right); m.append(cols);
  right.append(el('h3', 'Why this verdict'));
  const reasons = el('ul');
  for (const x of r.reasons || []) reasons.append(el('li', x.text));
  if (r.error) reasons.append(el('li', r.error.message));
  right.append(reasons);
  right.append(el('h3', 'Detector scores'));
  const t = el('table'), hr = el('tr');
  for (const h of ['detector', 'P(synthetic)', 'threshold']) hr.append(el('th', h));
  t.append(hr);
  for (const [name, s] of Object.entries(r.scores || {})) {
    const tr = el('tr');
    tr.append(el('td', name), el('td', s.score === null ? 'n/a' : Number(s.score).toFixed(3)),
              el('td', d.thresholds[name] == null ? '' : Number(d.thresholds[name]).toFixed(3)));
    t.append(tr);
  }
  if (r.fused && r.fused.score !== undefined && r.fused.score !== null) {
    const tr = el('tr');
    tr.append(el('td', 'fused'), el('td', Number(r.fused.score).toFixed(3)), el('td', ''));
    t.append(tr);
  }
  right.append(t);
  right.append(el('h3', 'Provenance'));
  const prov = r.provenance ? {...r.provenance, path: null} : null;  // the path is above
  right.append(tree(prov) || el('p', 'not checked', 'muted'));
  const extra = {metadata: r.metadata, watermark: r.watermark};
  const more = tree(extra); if (more) { right.append(el('h3', 'Metadata and watermark'), more); }
  if (d.decision && !$('note').value) $('note').value = d.decision.note;
  document.body.dataset.shown = String(i);
  $('current').textContent = d.decision
    ? 'your decision: ' + d.decision.label + ' (' + d.decision.time + ')' : 'not decided yet';
}

async function decide(label) {
  if (busy || cur < 0) return;
  busy = true;
  try {
    const r = await fetch(withToken('/api/feedback'), {
      method: 'POST',
      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': CFG.csrf},
      body: JSON.stringify({index: cur, label: label, note: $('note').value}),
    });
    const d = await r.json();
    if (!r.ok) { $('status').textContent = 'not saved: ' + d.detail; return; }
    files[cur].label = label; saved += 1;
    $('status').textContent = 'saved ' + label + ': ' + base(d.path);
    if (cur + 1 < files.length) await show(cur + 1); else drawList();
    document.body.dataset.saved = String(saved);
  } finally { busy = false; }
}

function nextUndecided() {
  for (let k = 1; k <= files.length; k++) {
    const i = (cur + k) % files.length; if (!files[i].label) return i;
  }
  return cur;
}

document.addEventListener('keydown', (ev) => {
  if (ev.target.id === 'note') {
    if (ev.key === 'Escape' || (ev.key === 'Enter' && !ev.shiftKey)) {
      ev.preventDefault(); ev.target.blur();
    }
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const keys = {
    j: () => show(cur + 1), ArrowRight: () => show(cur + 1), ArrowDown: () => show(cur + 1),
    k: () => show(cur - 1), ArrowLeft: () => show(cur - 1), ArrowUp: () => show(cur - 1),
    r: () => decide('real'), s: () => decide('synthetic'), u: () => decide('unsure'),
    n: () => $('note').focus(), g: () => show(nextUndecided()),
    '?': () => $('help').classList.toggle('show'),
  };
  if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); }
});
for (const b of document.querySelectorAll('button[data-label]')) {
  b.onclick = () => decide(b.dataset.label);
}

(async () => {
  const d = await getJSON('/api/queue');
  files = d.files;
  const first = files.findIndex((f) => !f.label);
  document.body.dataset.ready = '1';
  if (files.length) await show(first < 0 ? 0 : first); else drawList();
})();
"""


def render_page(
    *, token: str, csrf: str, nonce: str, scan: str, labels: Sequence[str], reviewer: str = ""
) -> str:
    """The page; ``nonce`` lets its own style and script run under the app's CSP."""
    cfg = json.dumps({"token": token, "csrf": csrf, "reviewer": reviewer}).replace("<", "\\u003c")
    keys = {"real": "r", "synthetic": "s", "unsure": "u"}
    buttons = "".join(
        f'<button data-label="{html.escape(lab)}"><kbd>{keys.get(lab, "")}</kbd> '
        f"{html.escape(lab)}</button>"
        for lab in labels
    )
    n = html.escape(nonce)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width'><link rel='icon' href='data:,'>"
        f"<title>deepaudit review · {html.escape(scan)}</title>"
        f"<style nonce='{n}'>{_CSS}</style></head><body>"
        "<nav id='side'><h1>deepaudit review</h1>"
        f"<p class='muted'>{html.escape(scan)}</p><p class='muted' id='progress'></p>"
        "<ul id='list'></ul></nav>"
        "<main id='main'><div id='main-body'><p class='muted'>loading…</p></div>"
        "<div id='decide'>"
        f"{buttons}<textarea id='note' placeholder='note (n to write, Enter or Esc to "
        "leave)'></textarea><div><div id='current' class='muted'></div>"
        "<div id='status' role='status'></div></div></div>"
        "<p class='muted'><kbd>j</kbd>/<kbd>k</kbd> next/previous · <kbd>r</kbd> real · "
        "<kbd>s</kbd> synthetic · <kbd>u</kbd> unsure (saves and moves on) · <kbd>n</kbd> note "
        "· <kbd>g</kbd> next undecided · <kbd>?</kbd> help</p>"
        "<div id='help' class='muted'><p>Decisions are appended to feedback.jsonl in the scan "
        "folder with your name, the time and the scan's verdict; a later decision about the "
        "same file replaces the earlier one when the feedback is imported (deepaudit manifest "
        "import-feedback). Unsure files are left out of the dataset.</p></div></main>"
        f"<script type='application/json' id='cfg'>{cfg}</script>"
        f"<script nonce='{n}'>{_SCRIPT}</script></body></html>"
    )
