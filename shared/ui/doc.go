// Package ui is Airlock's browse and search web UI: static files (HTML, one
// stylesheet, plain JavaScript modules, no framework) embedded in the binary
// with go:embed and served by the api function itself under /ui/ (the root
// / redirects there). Nothing is loaded from elsewhere (no CDN, no external
// fonts or scripts), so the UI works in an air-gapped network.
//
// The pages read the registry's browse endpoints (package registry,
// /airlock/api/browse/...), which apply the caller's browse and read
// privileges: a visitor sees what anonymous may browse; the login form asks
// the token endpoint (/v2/token, a refresh token included) and keeps the
// tokens in sessionStorage only (gone when the tab closes).
//
// Every response of the handler (files, redirects, 404s) carries the
// security headers of SetSecurityHeaders: a strict Content-Security-Policy
// (only this origin's scripts and styles, no inline script or style,
// frame-ancestors 'none', Trusted Types required so that no string can reach
// an HTML sink), X-Content-Type-Options: nosniff, Referrer-Policy:
// no-referrer and X-Frame-Options: DENY. The scripts render every name,
// tag and annotation with textContent, never as HTML.
//
// Caching: each file has an ETag made from its content's SHA-256 (computed
// once, at start) and Cache-Control: no-cache, so browsers keep the files
// and revalidate them on each load (a conditional GET answered 304 with no
// body); a new deployment is picked up at once, and the pages, a
// single-page application with hash routes, load the files once per visit.
package ui
