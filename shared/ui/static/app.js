// Airlock's browse UI: a single page with hash routes (#/, #/images?repo=,
// #/tags?repo=&image=, #/manifest?repo=&image=&ref=[&index=], #/search?q=, #/login).
import { get, login, logout, sessionEnded, ApiError } from './api.js';
import { h, route } from './dom.js';
import * as views from './views.js';

const main = document.getElementById('main');
const who = document.getElementById('who');
const crumbs = document.getElementById('crumbs');
let me = { auth: false, admin: false };

function parse() {
  const raw = location.hash.replace(/^#\/?/, '');
  const i = raw.indexOf('?');
  const page = (i < 0 ? raw : raw.slice(0, i)) || 'repositories';
  const params = Object.fromEntries(new URLSearchParams(i < 0 ? '' : raw.slice(i + 1)));
  return { page, params };
}

function header(page, p) {
  const parts = [];
  if (p.repo) parts.push('/ ', h('a', { href: route('images', { repo: p.repo }) }, p.repo), ' ');
  if (p.image) parts.push('/ ', h('a', { href: route('tags', { repo: p.repo, image: p.image }) }, p.image), ' ');
  if (page === 'manifest' && p.ref) parts.push(p.ref.includes(':') ? '@ ' : ': ', h('span', null, p.ref));
  crumbs.replaceChildren(...parts);
  const q = document.getElementById('q');
  if (page === 'search' && document.activeElement !== q) q.value = p.q || '';
  if (!me.auth) {
    who.replaceChildren(h('span', { class: 'muted', title: 'this registry has no auth section: everyone may do everything' }, 'auth off'));
  } else if (me.user) {
    who.replaceChildren(h('span', { id: 'user' }, me.user + (me.admin ? ' (admin)' : '')),
      h('button', { type: 'button', id: 'logout', onclick: () => { logout(); render(); } }, 'Log out'));
  } else {
    who.replaceChildren(h('a', { href: route('login', { back: location.hash }), id: 'login-link' }, 'Log in'));
  }
}

function loginPage(p) {
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const msg = h('p', { id: 'login-error', class: 'error', role: 'alert', hidden: true });
  const form = h('form', { class: 'login', id: 'login' },
    h('label', { for: 'username' }, 'User'), user,
    h('label', { for: 'password' }, 'Password or API token'), pass,
    h('button', { type: 'submit' }, 'Log in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.hidden = true;
    try {
      await login(user.value, pass.value);
      location.hash = p.back && p.back.startsWith('#/') && !p.back.startsWith('#/login') ? p.back : '#/';
    } catch (e) {
      msg.textContent = e.status === 401 ? 'Wrong user name or password.' : e.message;
      msg.hidden = false;
    }
  });
  return [h('h1', null, 'Log in'), form, msg,
    h('p', { class: 'muted' }, 'The token is kept in this tab only (sessionStorage) and is gone when the tab closes.')];
}

function failure(e) {
  const out = [h('p', { class: 'error', role: 'alert', id: 'error' }, e instanceof ApiError ? e.message : String(e))];
  if (e instanceof ApiError && e.status === 401 && me.auth && !me.user) {
    out.push(h('p', null, h('a', { href: route('login', { back: location.hash }) }, 'Log in'), ' to see more.'));
  }
  return out;
}

let seq = 0;

async function render() {
  const n = ++seq;
  const { page, params } = parse();
  try {
    me = await get('me');
  } catch (e) {
    me = { auth: true, admin: false };
  }
  if (n !== seq) return;
  header(page, params);
  document.title = `Airlock · ${page}`;
  let nodes;
  try {
    if (page === 'login') nodes = loginPage(params);
    else if (views[page]) nodes = await views[page](params, me);
    else nodes = [h('p', { class: 'error' }, `No page ${page}.`), h('a', { href: '#/' }, 'Repositories')];
    if (sessionEnded()) nodes.unshift(h('p', { class: 'notice', id: 'session-ended' }, 'Your session ended: log in again.'));
  } catch (e) {
    nodes = failure(e);
  }
  if (n !== seq) return; // a newer navigation won
  main.replaceChildren(...nodes.flat().filter(Boolean));
  main.setAttribute('data-page', page);
  main.setAttribute('data-ready', String(n));
}

document.getElementById('search').addEventListener('submit', (ev) => {
  ev.preventDefault();
  location.hash = route('search', { q: document.getElementById('q').value.trim() });
});
window.addEventListener('hashchange', render);
render();
