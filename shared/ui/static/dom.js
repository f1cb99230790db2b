// DOM helpers. Every string given to them becomes a text node or an
// attribute value: nothing here parses HTML (the page's Content-Security-
// Policy requires Trusted Types, so assigning a string to an HTML sink would throw).

// h creates an element: attrs are attributes ("class", "on<event>" handlers,
// others set as they are), children are nodes or strings (text).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// route returns the hash link of a page with its parameters.
export function route(page, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== '') q.set(k, v);
  const s = q.toString();
  return '#/' + page + (s ? '?' + s : '');
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

// size formats a byte count (the exact count goes in the title).
export function size(n) {
  if (typeof n !== 'number') return '';
  let v = n, u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return (u === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + ' ' + units[u];
}

// sizeCell is a table cell showing a size, with data-bytes holding the exact count.
export function sizeCell(n, prefix) {
  return h('td', { class: 'num size', 'data-bytes': n, title: n.toLocaleString('en') + ' bytes' }, (prefix || '') + size(n));
}

// when formats a time stamp in the viewer's zone ('' when absent).
export function when(t) {
  if (!t) return '';
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
}

// short abbreviates a digest to its algorithm and 12 hex digits.
export function short(d) {
  const i = d.indexOf(':');
  return i < 0 ? d : d.slice(0, i + 13);
}

const mediaNames = {
  'application/vnd.oci.image.manifest.v1+json': 'OCI image',
  'application/vnd.oci.image.index.v1+json': 'OCI index',
  'application/vnd.docker.distribution.manifest.v2+json': 'Docker image',
  'application/vnd.docker.distribution.manifest.list.v2+json': 'Docker manifest list',
  'application/vnd.oci.image.config.v1+json': 'OCI config',
  'application/vnd.docker.container.image.v1+json': 'Docker config',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'layer (tar+gzip)',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'layer (tar+zstd)',
  'application/vnd.oci.image.layer.v1.tar': 'layer (tar)',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'layer (tar+gzip)',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'foreign layer',
};

// media is a cell content naming a media type briefly (the full type in the title).
export function media(mt) {
  return h('span', { title: mt }, mediaNames[mt] || mt || '');
}

// platform formats os/architecture[/variant].
export function platform(p) {
  if (!p) return '';
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

// command is a read-only field holding a shell command and a Copy button.
export function command(text, label) {
  const input = h('input', { type: 'text', readonly: true, value: text, 'aria-label': label || 'command', spellcheck: 'false' });
  const button = h('button', { type: 'button', class: 'copy' }, 'Copy');
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      input.select(); // no clipboard access (a plain-http host other than localhost): select it for Ctrl-C
      document.execCommand && document.execCommand('copy');
    }
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  });
  return h('div', { class: 'cmd' }, input, button);
}

// table builds a table from a header row and rows of cells (nodes, strings or td elements).
export function table(id, headers, rows) {
  const head = h('tr', null, headers.map((x) => (x instanceof Node ? x : h('th', null, x))));
  const body = rows.map((r) => (r instanceof Node ? r : h('tr', null, r.map(cell))));
  return h('table', { id }, h('thead', null, head), h('tbody', null, body));
}

export function cell(c) {
  return c instanceof Node && c.nodeName === 'TD' ? c : h('td', null, c);
}
