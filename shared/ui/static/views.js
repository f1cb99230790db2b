// The pages. Each takes the route's parameters and the viewer ({auth, user,
// admin}) and returns the nodes of <main>; names, tags and annotations are
// always text.
import { call, get } from './api.js';
import { h, route, size, sizeCell, when, short, media, platform, command, table, cell } from './dom.js';

const host = location.host;
const insecure = location.protocol === 'http:' ? ' --insecure' : '';

function pullRef(repo, image, ref) {
  return `${host}/${repo}/${image}${ref.includes(':') ? '@' : ':'}${ref}`;
}

// pullCommands are docker pull by tag (when ref is one) and by digest, and crane pull by digest.
function pullCommands(repo, image, ref, digest) {
  const byDigest = pullRef(repo, image, digest);
  return h('div', { class: 'pull', id: 'pull' },
    ref.includes(':') ? '' : command(`docker pull ${pullRef(repo, image, ref)}`, 'docker pull command (tag)'),
    command(`docker pull ${byDigest}`, 'docker pull command (digest)'),
    command(`crane pull${insecure} ${byDigest} image.tar`, 'crane pull command'));
}

function kindBadge(kind) {
  return h('span', { class: 'badge kind' }, kind);
}

function health(st) {
  if (!st) return '';
  if (st.blocked) return h('span', { class: 'badge bad', title: `blocked until ${when(st.blockedUntil)}` }, `blocked until ${when(st.blockedUntil)}`);
  if (st.consecutiveFailures > 0) return h('span', { class: 'badge warn' }, `${st.consecutiveFailures} failed call(s)`);
  return h('span', { class: 'badge ok' }, 'healthy');
}

function pager(page, params, next) {
  if (!next) return null;
  return h('div', { class: 'pager' }, h('a', { href: route(page, { ...params, last: next }), class: 'next', rel: 'next' }, 'Next page →'));
}

// repositories: every repository the viewer may see.
export async function repositories(p, me) {
  const { repositories: repos } = await get('repositories');
  const rows = repos.map((r) => {
    let details = [];
    if (r.kind === 'hosted') details = [`policy ${r.policy}`];
    if (r.kind === 'group') {
      details = ['members: ', r.members.flatMap((m, i) => [i ? ', ' : '', h('a', { href: route('images', { repo: m }) }, m)])];
      if (r.writeMember) details.push(` · pushes go to ${r.writeMember}`);
    }
    if (r.kind === 'proxy') details = [h('span', { class: 'mono' }, r.remote), ' ', health(r.health),
      r.health && r.health.pendingFills ? ` · ${r.health.pendingFills} fill(s) pending` : ''];
    return h('tr', { 'data-name': r.name },
      h('td', null, h('a', { href: route('images', { repo: r.name }), class: 'repo' }, r.name), r.default ? [' ', h('span', { class: 'badge', title: 'takes names whose first component names no repository' }, 'default')] : ''),
      cell(kindBadge(r.kind)), cell(details), cell(r.anonymousPull ? 'yes' : 'no'));
  });
  const out = [h('h1', null, 'Repositories')];
  if (!repos.length) out.push(h('p', { class: 'notice' }, me.auth && !me.user ? 'Anonymous visitors may not browse any repository here: log in.' : 'No repository to show.'));
  else out.push(table('repos', ['Name', 'Kind', 'Details', 'Anonymous pull'], rows));
  if (me.admin && repos.some((r) => r.kind === 'proxy')) out.push(...(await proxyStatus()));
  return out;
}

// proxyStatus is the admin API's view of every proxy (admins only).
async function proxyStatus() {
  const { proxies } = await call('GET', '/airlock/api/proxies');
  return [h('h2', null, 'Proxy status (admin)'), table('proxies', ['Proxy', 'Remote', 'Consecutive failures', 'Blocked until', 'Pending fills'],
    proxies.map((x) => h('tr', { 'data-name': x.name }, cell(x.name), cell(h('span', { class: 'mono' }, x.remote)),
      h('td', { class: 'num' }, String(x.consecutiveFailures)), cell(x.blocked ? when(x.blockedUntil) : '—'), h('td', { class: 'num' }, String(x.pendingFills)))))];
}

// images: the images of one repository, a page at a time.
export async function images(p) {
  const res = await get('images', { repo: p.repo, last: p.last || '' });
  const out = [h('h1', null, `Images in ${res.repository}`)];
  if (!res.images.length) {
    out.push(h('p', { class: 'notice' }, p.last ? 'No more images.' : `No image stored in ${res.repository} yet.`));
  } else {
    out.push(h('ul', { class: 'names', id: 'images' }, res.images.map((i) =>
      h('li', { 'data-name': i.name }, h('a', { href: route('tags', { repo: res.repository, image: i.name }) }, i.name)))));
  }
  out.push(pager('images', { repo: p.repo }, res.next));
  return out;
}

// tags: the tags of one image with their manifests' summaries.
export async function tags(p, me) {
  const res = await get('tags', { repo: p.repo, image: p.image, last: p.last || '' });
  const group = res.kind === 'group';
  const headers = ['Tag', 'Digest', 'Type', h('th', { class: 'num' }, 'Total size'), 'Pushed', 'Platforms'];
  if (group) headers.push('Member');
  headers.push('Pull');
  const refreshable = (t) => me.admin && (res.kind === 'proxy' || t.memberKind === 'proxy');
  if (res.tags.some(refreshable)) headers.push('Admin');
  const rows = res.tags.map((t) => {
    const cells = [
      cell(h('a', { href: route('manifest', { repo: res.repository, image: res.image, ref: t.tag }), class: 'tag' }, t.tag)),
      h('td', { class: 'digest', 'data-digest': t.digest, title: t.digest }, h('a', { href: route('manifest', { repo: res.repository, image: res.image, ref: t.digest }) }, short(t.digest))),
      cell(media(t.artifactType || t.mediaType)),
      sizeCell(t.totalSize, t.incomplete ? '≥ ' : ''),
      h('td', { title: t.created ? `created ${t.created}` : '' }, when(t.pushed)),
      h('td', { class: 'platforms' }, (t.platforms || []).map(platform).join(', ')),
    ];
    if (group) cells.push(cell(t.member));
    cells.push(cell(command(`docker pull ${pullRef(res.repository, res.image, t.tag)}`, `docker pull ${t.tag}`)));
    if (refreshable(t)) cells.push(cell(refreshButton(group ? t.member : res.repository, res.image, t.tag)));
    return h('tr', { 'data-tag': t.tag }, cells);
  });
  const out = [h('h1', null, `${res.repository}/${res.image}`)];
  if (!rows.length) out.push(h('p', { class: 'notice' }, p.last ? 'No more tags.' : 'No tag stored (manifests pushed by digest only are listed by their referrers and indexes).'));
  else out.push(table('tags', headers, rows));
  out.push(pager('tags', { repo: p.repo, image: p.image }, res.next));
  return out;
}

// refreshButton asks the admin API to revalidate one cached proxy tag now.
function refreshButton(proxy, image, tag) {
  const status = h('span', { class: 'muted refresh-status' });
  const b = h('button', { type: 'button', class: 'refresh', title: `revalidate ${proxy}/${image}:${tag} against the upstream now` }, 'Refresh this tag');
  b.addEventListener('click', async () => {
    b.disabled = true;
    status.textContent = ' refreshing…';
    try {
      const r = await call('POST', `/airlock/api/proxies/${encodeURIComponent(proxy)}/refresh`, { name: image, tag });
      status.textContent = ` ${short(r.digest)}${r.warning ? ' (' + r.warning + ')' : ''}`;
      status.setAttribute('data-digest', r.digest);
    } catch (e) {
      status.textContent = ' ' + e.message;
      status.className = 'error-text';
    } finally {
      b.disabled = false;
    }
  });
  return [b, status];
}

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '').map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

function annotations(id, a) {
  const keys = Object.keys(a || {}).sort();
  if (!keys.length) return [];
  return [h('h2', null, 'Annotations'), table(id, ['Key', 'Value'], keys.map((k) => h('tr', null, h('td', { class: 'mono' }, k), h('td', { class: 'value' }, a[k]))))];
}

// manifest: one manifest with its config, layers, children and referrers;
// with p.index (a digest) it is one platform of that index.
export async function manifest(p) {
  const m = await get('manifest', { repo: p.repo, image: p.image, ref: p.ref, ...(p.index ? { index: p.index } : {}) });
  const link = (d) => h('a', { href: route('manifest', { repo: m.repository, image: m.image, ref: d }), class: 'mono' }, d);
  const c = m.config;
  const out = [
    h('h1', null, `${m.repository}/${m.image}${p.ref.includes(':') ? '@' : ':'}${p.ref}`,
      m.platform ? [' ', h('span', { class: 'badge platform', id: 'platform', title: 'platform' }, platform(m.platform))] : ''),
    m.index ? h('p', { id: 'in-index' }, 'One platform of the index ', link(m.index), '.') : '',
    facts([
      ['Digest', h('span', { class: 'mono', id: 'digest' }, m.digest)],
      ['Media type', m.mediaType],
      ['Artifact type', m.artifactType],
      ['Size', size(m.size)],
      ['Total size', h('span', { id: 'total', 'data-bytes': m.totalSize, title: `${m.totalSize} bytes` }, (m.incomplete ? '≥ ' : '') + size(m.totalSize))],
      ['Stored', when(m.pushed)],
      ['Created', c && c.created ? when(c.created) : m.created],
      ['Platform', platform(m.platform)],
      ['Member', m.member ? `${m.member} (${m.memberKind})` : ''],
      ['Subject', m.subject ? link(m.subject) : ''],
    ]),
    h('h2', null, 'Pull'),
    pullCommands(m.repository, m.image, p.ref, m.digest),
    ...annotations('annotations', m.annotations),
  ];
  if (c || m.layers.length) {
    const rows = [];
    if (c) rows.push(h('tr', { class: 'config' }, cell('config'), h('td', { class: 'digest', title: c.digest }, short(c.digest)), cell(media(c.mediaType)), sizeCell(c.size)));
    m.layers.forEach((l, i) => rows.push(h('tr', { 'data-digest': l.digest }, cell(String(i + 1)), h('td', { class: 'digest', title: l.digest }, short(l.digest)), cell(media(l.mediaType)), sizeCell(l.size))));
    out.push(h('h2', null, `Layers (${m.layers.length})`), table('layers', ['#', 'Digest', 'Type', h('th', { class: 'num' }, 'Size')], rows));
  }
  if (m.manifests && m.manifests.length) {
    // Each stored platform links to its own page (config, layers, size), told which index it belongs to.
    const child = (x, text, cls) => x.stored
      ? h('a', { href: route('manifest', { repo: m.repository, image: m.image, ref: x.digest, index: m.digest }), class: cls }, text)
      : h('span', { class: cls }, text);
    out.push(h('h2', null, `Manifests (${m.manifests.length})`), table('children', ['Platform', 'Digest', 'Type', h('th', { class: 'num' }, 'Total size'), 'Stored'],
      m.manifests.map((x) => h('tr', { 'data-digest': x.digest, 'data-platform': platform(x.platform) },
        cell(child(x, platform(x.platform) || x.artifactType || media(x.mediaType), 'platform')),
        h('td', { class: 'digest', title: x.digest }, child(x, x.digest, 'mono')),
        cell(media(x.mediaType)), x.stored ? sizeCell(x.totalSize) : h('td', { class: 'num size muted', 'data-bytes': x.size }, size(x.size) + ' (manifest)'),
        cell(x.stored ? 'yes' : 'no (not pulled through this proxy)')))));
  }
  out.push(h('h2', null, `Referrers (${m.referrers.length})`));
  if (!m.referrers.length) out.push(h('p', { class: 'muted' }, 'No signature, SBOM or other artifact refers to this manifest.'));
  else out.push(table('referrers', ['Artifact type', 'Digest', h('th', { class: 'num' }, 'Size'), 'Annotations'],
    m.referrers.map((r) => h('tr', { 'data-digest': r.digest }, cell(r.artifactType || r.mediaType), h('td', { class: 'digest' }, link(r.digest)), sizeCell(r.size),
      h('td', { class: 'value' }, Object.entries(r.annotations || {}).map(([k, v]) => `${k}=${v}`).join('\n'))))));
  if (m.truncated) out.push(h('p', { class: 'notice' }, 'Lists cut at 1,000 entries.'));
  return out;
}

// search: images whose name contains q.
export async function search(p) {
  const page = Number(p.page) || 1;
  const res = await get('search', { q: p.q || '', page });
  const out = [h('h1', null, `Search: ${res.query}`), h('p', { class: 'muted', id: 'found' }, `${res.total} image(s) found${res.capped ? ' (the first 1,000 matches)' : ''}`)];
  if (res.results.length) {
    out.push(h('ul', { class: 'names', id: 'results' }, res.results.map((r) =>
      h('li', { 'data-name': r.name }, h('a', { href: route('tags', { repo: r.repository, image: r.image }) }, r.name)))));
  }
  if (res.pages > 1) {
    out.push(h('div', { class: 'pager' },
      page > 1 ? h('a', { href: route('search', { q: res.query, page: page - 1 }) }, '← Previous') : '',
      h('span', null, `page ${page} of ${res.pages}`),
      page < res.pages ? h('a', { href: route('search', { q: res.query, page: page + 1 }), class: 'next' }, 'Next →') : ''));
  }
  return out;
}
