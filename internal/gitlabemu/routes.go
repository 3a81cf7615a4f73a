package gitlabemu

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// route is the result of matching a request path, before any auth.
type route struct {
	endpoint string   // logical name; EndpointUnknown when nothing matched
	allowed  []string // methods the matched path supports; nil = no such path
	kind     string   // kindProject, kindGroup, or "" for instance-level routes
	ref      string   // unescaped :id
	tokenID  string   // raw :token_id, "" for collection routes
	nsID     int64    // resolved namespace id
	nsFound  bool     // the namespace exists (visibility is checked later)
	scope    string   // "project:<id>"/"group:<id>" when nsFound
}

const apiPrefix = "/api/v4/"

// route matches on the escaped path: a full path like games%2Ffleet must stay
// a single segment, which the decoded path would split.
func (s *Server) route(r *http.Request) route {
	rt := route{endpoint: EndpointUnknown}
	p := r.URL.EscapedPath()
	if p == jwtAuthPath {
		// Rails routes only GET (and so HEAD) here; anything else is no route.
		if isGet(r.Method) {
			rt.endpoint = EndpointJWTAuth
			rt.allowed = []string{http.MethodGet, http.MethodHead}
		}
		return rt
	}
	if !strings.HasPrefix(p, apiPrefix) {
		return rt
	}
	seg := strings.Split(strings.TrimPrefix(p, apiPrefix), "/")
	for _, x := range seg {
		if x == "" {
			return rt
		}
	}
	switch {
	case len(seg) == 1 && seg[0] == "deploy_tokens":
		rt.allowed = []string{http.MethodGet, http.MethodHead}
		if isGet(r.Method) {
			rt.endpoint = EndpointListAllDeployTokens
		}
		return rt
	case len(seg) == 2 && seg[0] == "personal_access_tokens" && seg[1] == "self":
		rt.allowed = []string{http.MethodGet, http.MethodHead}
		if isGet(r.Method) {
			rt.endpoint = EndpointGetPersonalAccessTokenSelf
		}
		return rt
	case (len(seg) == 3 || len(seg) == 4) && (seg[0] == "projects" || seg[0] == "groups") && seg[2] == "deploy_tokens":
	default:
		return rt
	}

	ref, err := url.PathUnescape(seg[1])
	if err != nil {
		return rt
	}
	rt.kind = kindProject
	if seg[0] == "groups" {
		rt.kind = kindGroup
	}
	rt.ref = ref
	if len(seg) == 3 {
		rt.allowed = []string{http.MethodGet, http.MethodHead, http.MethodPost}
		switch {
		case isGet(r.Method):
			rt.endpoint = EndpointListDeployTokens
		case r.Method == http.MethodPost:
			rt.endpoint = EndpointCreateDeployToken
		}
	} else {
		tid, err := url.PathUnescape(seg[3])
		if err != nil {
			return route{endpoint: EndpointUnknown}
		}
		rt.tokenID = tid
		rt.allowed = []string{http.MethodGet, http.MethodHead, http.MethodDelete}
		switch {
		case isGet(r.Method):
			rt.endpoint = EndpointGetDeployToken
		case r.Method == http.MethodDelete:
			rt.endpoint = EndpointDeleteDeployToken
		}
	}

	s.mu.Lock()
	rt.nsID, rt.nsFound = s.lookupNamespace(rt.kind, ref)
	s.mu.Unlock()
	if rt.nsFound {
		rt.scope = scopeKey(rt.kind, rt.nsID)
	}
	return rt
}

func isGet(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// handleAPI answers a routed API request with GitLab's semantics.
func (s *Server) handleAPI(r *http.Request, rt route, body []byte) *response {
	if rt.allowed == nil {
		return errorResponse(http.StatusNotFound, "404 Not Found")
	}
	if !slices.Contains(rt.allowed, r.Method) {
		resp := errorResponse(http.StatusMethodNotAllowed, "405 Not Allowed")
		resp.header.Set("Allow", strings.Join(rt.allowed, ", "))
		return resp
	}
	switch rt.endpoint {
	case EndpointListAllDeployTokens:
		return s.listAllDeployTokens(r)
	case EndpointListDeployTokens:
		return s.listDeployTokens(r, rt)
	case EndpointGetDeployToken:
		return s.getDeployToken(r, rt)
	case EndpointCreateDeployToken:
		return s.createDeployToken(r, rt, body)
	case EndpointDeleteDeployToken:
		return s.deleteDeployToken(r, rt)
	case EndpointGetPersonalAccessTokenSelf:
		return s.getPersonalAccessTokenSelf(r)
	case EndpointJWTAuth:
		return s.jwtAuth(r)
	}
	return errorResponse(http.StatusNotFound, "404 Not Found")
}
