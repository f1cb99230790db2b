// Package upstream is the client a proxy repository uses to talk to its
// remote registry: Docker Hub, GHCR, Quay, ECR Public, another Airlock or Nexus.
//
// Authentication is go-containerregistry's transport (the /v2/ ping, Basic
// or the Bearer token flow with the proxy's credentials or anonymously, token
// refresh on 401). Requests are made raw on top of it, so the proxy controls
// what is sent: conditional HEADs (If-None-Match with the cached digest),
// ranged GETs when a fill resumes, and redirects followed by net/http —
// remote credentials are attached by the transport only to the remote's own
// host, never to the CDN a blob GET redirects to.
//
// Every failure is an *Error with a Kind the repository layer maps to an API
// answer: NotFound (404 from the remote), Denied (401/403), RateLimited (429,
// with the remote's Retry-After), Unavailable (connection refused, reset,
// time-out, 5xx: the remote is down) and Invalid (the remote answered
// something unusable). Every call is bounded by its context: the caller
// passes the request's remaining time.
//
// Transports (one per image name, since a bearer token is scoped to one
// repository) are kept in process memory only as an optimisation: a cold
// Lambda instance builds them again; correctness never depends on them.
package upstream
