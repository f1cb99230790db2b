// Package auth is Airlock's authentication and authorization: the Docker
// token service (GET and OAuth2 POST /v2/token, Docker token spec), the
// check of every request between resolve and dispatch, and the roles and
// privileges of the configuration (repositories + a content selector +
// actions, deny by default).
//
// Flow: a request without a token gets 401 with
// `WWW-Authenticate: Bearer realm="<scheme>://<host>/v2/token",service="<host>",scope=...`
// (the host as the client addressed it). The client asks the token endpoint
// (HTTP Basic with a password or an API token, a refresh token, or nothing:
// anonymous) for the scopes it needs; the endpoint reads the user once
// (package ident) and grants, per requested repository, exactly the actions
// the user's roles allow, evaluating each privilege's selector against the
// repository's path "/v2/<name>/" (so selectors are written on the name:
// path =^ "/v2/team-a/"). The token (package token: ES256 JWT, kid, access
// claim) is then verified on each request from memory: no DynamoDB read per
// request. A repository the token names without the needed action is
// 403 DENIED (the token service already refused it); one it does not name
// is 401 with the scope to ask for.
//
// Actions: pull needs read, push add and edit, delete delete; "/v2/" needs
// a valid login (anonymous tokens count when anonymous may read anything);
// the catalog and search list what the caller may browse or read.
// anonymousPull on a repository lets anyone read it; for a group, the
// group's own setting applies to pulls through it, each member's to pulls
// of that member.
package auth
