package gitlabemu

import (
	"net/http"
	"slices"
	"strings"
)

// GitLab's exact 401/403 bodies for token problems, from the reference.
const (
	expiredDescription = "Token is expired. You can either do re-authorization or token refresh."
	revokedDescription = "Token was revoked. You have to re-authorize from the user."
	scopeDescription   = "The request requires higher privileges than provided by the access token."
)

// tokenFromRequest extracts the API token the way GitLab accepts it from
// client-go: the Private-Token header, or an OAuth-style Bearer token.
func tokenFromRequest(r *http.Request) string {
	if t := r.Header.Get("Private-Token"); t != "" {
		return t
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// authenticate resolves the caller for the deploy-token API. A nil token
// with a nil error is an anonymous caller. The order (unknown, expired,
// revoked, scope) is GitLab's AccessTokenValidationService order. Caller
// holds s.mu.
func (s *Server) authenticate(r *http.Request) (*AccessToken, *response) {
	pat, deny := s.authenticateAnyScope(r)
	if pat == nil || deny != nil {
		return nil, deny
	}
	if !scopeAllows(pat.Scopes, r.Method) {
		resp := jsonResponse(http.StatusForbidden, struct {
			Error            string `json:"error"`
			ErrorDescription string `json:"error_description"`
			Scope            string `json:"scope"`
		}{"insufficient_scope", scopeDescription, "api"})
		resp.header.Set("WWW-Authenticate", `Bearer realm="Protected by OAuth 2.0", error="insufficient_scope", error_description="`+scopeDescription+`", scope="api"`)
		return nil, resp
	}
	return pat, nil
}

// authenticateAnyScope is authenticate without the scope check (unknown,
// expired, revoked), for endpoints any scope may call. Caller holds s.mu.
func (s *Server) authenticateAnyScope(r *http.Request) (*AccessToken, *response) {
	secret := tokenFromRequest(r)
	if secret == "" {
		return nil, nil
	}
	pat, ok := s.pats[secret]
	if !ok {
		return nil, messageResponse(http.StatusUnauthorized, "401 Unauthorized")
	}
	if pat.expiredAt(s.now) {
		return nil, invalidToken(expiredDescription)
	}
	if pat.Revoked {
		return nil, invalidToken(revokedDescription)
	}
	return &pat, nil
}

func invalidToken(desc string) *response {
	resp := jsonResponse(http.StatusUnauthorized, struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}{"invalid_token", desc})
	resp.header.Set("WWW-Authenticate", `Bearer realm="Protected by OAuth 2.0", error="invalid_token", error_description="`+desc+`"`)
	return resp
}

// scopeAllows: api grants everything, read_api only reads; nothing else
// (read_user, self_rotate, ...) grants the deploy-token API.
func scopeAllows(scopes []string, method string) bool {
	if slices.Contains(scopes, "api") {
		return true
	}
	return isGet(method) && slices.Contains(scopes, "read_api")
}

// authorize runs the whole check chain for a project or group route and
// returns the caller's token, or the refusal to send. Caller holds s.mu.
func (s *Server) authorize(r *http.Request, rt *route, need Role) (*AccessToken, *response) {
	pat, deny := s.authenticate(r)
	if deny != nil {
		return nil, deny
	}
	rt.nsID, rt.nsFound = s.lookupNamespace(rt.kind, rt.ref)
	role := NoAccess
	if rt.nsFound {
		role = s.effectiveRole(pat, rt.kind, rt.nsID)
	}
	// Private namespaces are invisible to anonymous and non-member callers,
	// so they cannot tell "missing" from "not yours".
	if role == NoAccess {
		if rt.kind == kindGroup {
			return nil, messageResponse(http.StatusNotFound, "404 Group Not Found")
		}
		return nil, messageResponse(http.StatusNotFound, "404 Project Not Found")
	}
	if role < need {
		return nil, messageResponse(http.StatusForbidden, "403 Forbidden")
	}
	return pat, nil
}

// requiredRole: Maintainer for everything except writing group tokens, which
// GitLab reserves for group Owners.
func requiredRole(kind, method string) Role {
	if kind == kindGroup && !isGet(method) {
		return Owner
	}
	return Maintainer
}
