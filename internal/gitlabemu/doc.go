// Package gitlabemu is a strict, in-process fake of the parts of the GitLab
// REST API that the rotator depends on (deploy tokens under /api/v4) and of
// GitLab's container-registry token service (/jwt/auth), built from
// /work/shared/reference/gitlab-api.md.
//
// GitLab cannot run in this environment, so the rotator's tests talk to this
// emulator instead. It is deliberately unforgiving: it refuses what GitLab
// refuses, with GitLab's status codes and body shapes, so that a rotator that
// passes here is not relying on leniency GitLab would not show. On top of the
// API it lets tests move the clock, inject faults and inspect every request.
//
// # REST API (/api/v4)
//
//	GET    /api/v4/deploy_tokens                          admin only
//	GET    /api/v4/projects/:id/deploy_tokens             project Maintainer
//	POST   /api/v4/projects/:id/deploy_tokens             project Maintainer
//	GET    /api/v4/projects/:id/deploy_tokens/:token_id   project Maintainer
//	DELETE /api/v4/projects/:id/deploy_tokens/:token_id   project Maintainer
//	GET    /api/v4/groups/:id/deploy_tokens               group Maintainer
//	POST   /api/v4/groups/:id/deploy_tokens               group Owner
//	GET    /api/v4/groups/:id/deploy_tokens/:token_id     group Maintainer
//	DELETE /api/v4/groups/:id/deploy_tokens/:token_id     group Owner
//	GET    /api/v4/personal_access_tokens/self            any valid token, any scope
//
// HEAD is accepted wherever GET is. :id is a number or the URL-encoded full
// path; routing uses the escaped path so "games%2Ffleet" stays one segment.
// Membership is inherited: a role on a group applies to every project and
// subgroup below it, and an admin token acts as Owner everywhere.
//
// Checks run in this order, mirroring where GitLab evaluates them:
//  1. token authentication: unknown token 401, expired 401 invalid_token,
//     revoked 401 (GitLab checks expiry before revocation);
//  2. token scope: read_api on a write 403 insufficient_scope (GitLab checks
//     scopes while authenticating, so this precedes the project lookup);
//  3. project or group lookup: unknown, anonymous or no-role caller 404;
//  4. role: 403 Forbidden;
//  5. parameters: 400, all parameter errors joined with ", " as Grape does,
//     then model errors ({"message": ...}) joined as a sentence.
//
// Requests without any token are anonymous: projects and groups are private,
// so they get the 404 of step 3, and the admin-only instance list gets 401.
//
// /personal_access_tokens/self describes the calling API token (GitLab 15.5+;
// project and group access tokens answer it too). It runs step 1 only:
// unknown, expired and revoked tokens get the same 401s as everywhere, an
// anonymous caller gets 401, and any scope (read_api, read_user, ...) may
// call it. The 200 body is GitLab's PersonalAccessToken entity: id (stable
// per token, assigned when it is first added), name "rotator", revoked,
// created_at (when it was first added, emulator clock), scopes, user_id 1,
// last_used_at null, active, and expires_at as a date (YYYY-MM-DD) or null.
// GitLab stores that date and stops accepting the token at 00:00 UTC on it;
// AccessToken.ExpiresAt is an instant, so the date shown is its UTC date
// (never later than the token really works), and an ExpiresAt at midnight
// UTC matches GitLab's date. Only GET and HEAD are served; the
// self-revoke and self-rotate calls are not emulated.
//
// # Registry token service (/jwt/auth)
//
//	GET /jwt/auth?service=container_registry&scope=repository:<path>:pull[&scope=...]
//
// This plays GitLab's container-registry token service for a real
// distribution registry configured with auth.token realm
// "<emulator URL>/jwt/auth", service "container_registry", issuer
// Server.Issuer() ("gitlab-issuer") and jwks = a file holding Server.JWKS()
// (also served at /-/emulator/jwks). The caller sends HTTP Basic auth with a
// deploy token's username and secret; account, client_id and offline_token
// are accepted and ignored. Checks run in GitLab's order:
//  1. Basic credentials that Authenticate refuses (unknown secret, username
//     not the token's, revoked, or expires_at before the emulator clock):
//     401 {"errors":[{"code":"UNAUTHORIZED","message":"HTTP Basic: Access
//     denied. ..."}]} with WWW-Authenticate: Basic realm="GitLab". This
//     precedes the service check, as GitLab authenticates in a before_action.
//  2. service other than container_registry: 404 with an empty body.
//  3. no Basic credentials: the same 401. (GitLab would answer as for an
//     anonymous user; the rotator always authenticates, so the emulator
//     refuses loudly instead.)
//  4. a token with neither read_registry nor write_registry: 403
//     {"errors":[{"code":"DENIED","message":"access forbidden"}]}.
//  5. 200 {"token":"<JWT>"} (no expires_in). Each scope parameter (several
//     may be given, each may hold space-separated scopes) of the form
//     repository:<name>:<actions> is granted when <name> resolves, like
//     GitLab's ContainerRegistry::Path, to a registered project: the
//     project whose lowercased full path is the longest prefix of <name>
//     ("games/fleet" or "games/fleet/sub/image" both resolve to games/fleet).
//     A project token reaches only its own project, a group token any project
//     under its group (subgroups included). pull needs read_registry, push
//     write_registry; other actions and other scope types (registry:catalog:*)
//     are never granted to deploy tokens. Scopes with nothing granted are left
//     out, so an unreachable repository gives a 200 whose access is [].
//
// The JWT is RS256 with header {"alg":"RS256","typ":"JWT","kid":...}, where
// kid is the libtrust fingerprint of the public key (as GitLab sends it) and
// matches the JWKS entry. Claims: iss, sub (the deploy token username), aud
// "container_registry", iat, nbf (iat - 5s), exp (iat + 5m, the self-managed
// default), jti (a random UUID) and access
// [{"type":"repository","name":...,"actions":["pull"]}]. iat, nbf and exp
// come from the real wall clock, not the emulator clock: the registry checks
// them against its own clock, so a moved emulator clock must not make every
// token look expired or not yet valid. The emulator clock only decides
// whether the deploy token is still usable. The 2048-bit signing key is
// generated once per Server, on first use, and lives only in memory.
//
// Requests are recorded and subject to faults as endpoint jwt_auth, with an
// empty Scope (Fault.Scope cannot narrow them). They are GETs, so they never
// count in WriteCount. Methods other than GET and HEAD get the no-route 404.
//
// # Faults
//
// Fault.Endpoint and Request.Endpoint use these logical names (the Endpoint*
// constants): list_deploy_tokens (project and group lists),
// list_all_deploy_tokens (instance list), get_deploy_token,
// create_deploy_token, delete_deploy_token, get_personal_access_token_self,
// jwt_auth (the registry's /jwt/auth) and unknown (no route, or a method the
// route does not allow). Fault.Scope ("project:7") narrows a fault to one
// project or group. Each fault counts its own matching requests from the
// moment it is installed, so OnCall: 2 means "the second matching request
// after InjectFault". Default answers: 429 is Rack::Attack's plain
// "Retry later" with RateLimit-* and Retry-After headers (RateLimit-Limit
// 2000, RateLimit-Reset one wall-clock second ahead); any other status gets
// {"message":"<code> <reason>"}. Normal answers never carry RateLimit-*
// headers unless a header-only fault adds them.
//
// Over the control API a fault is JSON with the fields method, endpoint,
// scope, onCall, times, status, body, header, delay (a Go duration such as
// "1.5s"), resetConnection and afterHandling; unknown fields are refused.
//
// # Control API (tests only)
//
// Everything under /-/emulator/ is unauthenticated, is not recorded and is
// never subject to faults. It exists so that tests and scripts driving the
// cmd/gitlab-emulator binary can do over HTTP what in-process tests do with
// methods; never expose it beyond a test network.
//
//	GET    /-/emulator/healthz
//	GET    /-/emulator/jwks                        JWKS of the registry token signing key
//	GET    /-/emulator/clock                       {"now":"RFC3339"}
//	POST   /-/emulator/clock                       {"now":"RFC3339"} and/or {"advance":"36h"}
//	GET    /-/emulator/requests                    recorded API requests
//	DELETE /-/emulator/requests
//	GET    /-/emulator/requests/summary            {"total":N,"writes":N,"byEndpoint":{},"byStatus":{}}
//	GET    /-/emulator/faults                      faults with their counters
//	POST   /-/emulator/faults                      Fault as JSON, delay as a Go duration; answers {"id":N}
//	DELETE /-/emulator/faults
//	DELETE /-/emulator/faults/:id
//	GET    /-/emulator/deploy_tokens?scope=project:7[&reveal=true]
//	POST   /-/emulator/deploy_tokens               seed {"scope","name","scopes","expires_at","username"}
//	POST   /-/emulator/deploy_tokens/:id/revoke    UI-style revoke
//	POST   /-/emulator/projects                    {"id":7,"path":"games/fleet"}
//	POST   /-/emulator/groups                      {"id":3,"path":"games"}
//	POST   /-/emulator/access_tokens               AccessToken as JSON, roles as {"project:7":"maintainer"}
package gitlabemu
