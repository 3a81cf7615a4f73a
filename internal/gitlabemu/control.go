package gitlabemu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The control API lets out-of-process tests (driving cmd/gitlab-emulator) do
// what in-process tests do with methods. It is unauthenticated and for test
// networks only; see the package documentation for the routes.

// knownEndpoints guards Fault.Endpoint against typos, which would otherwise
// make a fault silently never fire.
var knownEndpoints = map[string]bool{
	"":                                 true,
	EndpointListDeployTokens:           true,
	EndpointListAllDeployTokens:        true,
	EndpointGetDeployToken:             true,
	EndpointCreateDeployToken:          true,
	EndpointDeleteDeployToken:          true,
	EndpointGetPersonalAccessTokenSelf: true,
	EndpointJWTAuth:                    true,
	EndpointUnknown:                    true,
}

func validateFault(f Fault) error {
	if !knownEndpoints[f.Endpoint] {
		return fmt.Errorf("unknown endpoint %q", f.Endpoint)
	}
	if f.Status != 0 && (f.Status < 100 || f.Status > 599) {
		return fmt.Errorf("status %d out of range", f.Status)
	}
	if f.OnCall < 0 || f.Times < 0 || f.Delay < 0 {
		return errors.New("onCall, times and delay must not be negative")
	}
	if f.Scope != "" {
		if _, _, err := ParseScope(f.Scope); err != nil {
			return err
		}
	}
	if f.Status == 0 && !f.ResetConnection && f.Delay == 0 && len(f.Header) == 0 {
		return errors.New("fault does nothing: set status, delay, header or resetConnection")
	}
	return nil
}

// duration is a time.Duration that travels as a Go duration string ("1.5s");
// a bare JSON number is taken as nanoseconds.
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// parseDuration is time.ParseDuration plus a leading whole-day part ("21d",
// "1d12h"), the unit clock moves in tests are naturally written in.
func parseDuration(s string) (time.Duration, error) {
	var days time.Duration
	if i := strings.Index(s, "d"); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil {
			return 0, fmt.Errorf("duration %q: bad day count", s)
		}
		days, s = time.Duration(n)*24*time.Hour, s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	v, err := time.ParseDuration(s)
	return days + v, err
}

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := parseDuration(s)
		if err != nil {
			return err
		}
		*d = duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want a string like \"1.5s\" or nanoseconds, got %s", b)
	}
	*d = duration(n)
	return nil
}

type faultJSON struct {
	ID              int               `json:"id,omitempty"`
	Method          string            `json:"method,omitempty"`
	Endpoint        string            `json:"endpoint,omitempty"`
	Scope           string            `json:"scope,omitempty"`
	OnCall          int               `json:"onCall,omitempty"`
	Times           int               `json:"times,omitempty"`
	Status          int               `json:"status,omitempty"`
	Body            string            `json:"body,omitempty"`
	Header          map[string]string `json:"header,omitempty"`
	Delay           duration          `json:"delay,omitempty"`
	ResetConnection bool              `json:"resetConnection,omitempty"`
	AfterHandling   bool              `json:"afterHandling,omitempty"`
	Seen            int               `json:"seen"`
	Fired           int               `json:"fired"`
}

type requestJSON struct {
	Time     string `json:"time"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	RawQuery string `json:"rawQuery"`
	Endpoint string `json:"endpoint"`
	Scope    string `json:"scope"`
	Status   int    `json:"status"`
	Fault    int    `json:"fault"`
	Body     string `json:"body"`
}

// controlTokenJSON is the API entity plus what tests need to see.
type controlTokenJSON struct {
	tokenJSON
	Usable bool   `json:"usable"` // whether Authenticate would accept it now
	Scope  string `json:"scope"`
	Token  string `json:"token,omitempty"`
}

func (s *Server) controlToken(t DeployToken, now time.Time, reveal bool) controlTokenJSON {
	c := controlTokenJSON{tokenJSON: entity(&t, now), Usable: t.usableAt(now), Scope: t.Scope}
	if reveal {
		c.Token = t.Token
	}
	return c
}

// decodeStrict rejects unknown fields so that a misspelt option in a test
// script fails instead of being ignored.
func decodeStrict(r *http.Request, v any) error {
	body, tooLarge := readBody(r)
	if tooLarge {
		return errors.New("body too large")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad JSON body: %w", err)
	}
	return nil
}

func controlError(status int, err error) *response {
	return errorResponse(status, err.Error())
}

func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	resp := s.control(r)
	resp.write(w, r.Method == http.MethodHead)
}

func (s *Server) control(r *http.Request) *response {
	path := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/-/emulator"), "/")
	seg := strings.Split(strings.TrimPrefix(path, "/"), "/")
	methods := func(allowed ...string) *response {
		for _, m := range allowed {
			if r.Method == m {
				return nil
			}
		}
		resp := errorResponse(http.StatusMethodNotAllowed, "405 Not Allowed")
		resp.header.Set("Allow", strings.Join(allowed, ", "))
		return resp
	}

	switch {
	case path == "/jwks":
		if bad := methods(http.MethodGet, http.MethodHead); bad != nil {
			return bad
		}
		resp := newResponse(http.StatusOK)
		resp.header.Set("Content-Type", "application/json")
		resp.body = s.JWKS()
		return resp

	case path == "/healthz":
		if bad := methods(http.MethodGet, http.MethodHead); bad != nil {
			return bad
		}
		return jsonResponse(http.StatusOK, map[string]bool{"ok": true})

	case path == "/clock":
		if bad := methods(http.MethodGet, http.MethodPost); bad != nil {
			return bad
		}
		if r.Method == http.MethodPost {
			var in struct {
				Now     *time.Time `json:"now"`
				Advance *duration  `json:"advance"`
			}
			if err := decodeStrict(r, &in); err != nil {
				return controlError(http.StatusBadRequest, err)
			}
			if in.Now == nil && in.Advance == nil {
				return errorResponse(http.StatusBadRequest, `set "now" (RFC 3339) and/or "advance" (Go duration, days allowed: "21d")`)
			}
			if in.Now != nil {
				s.SetNow(*in.Now)
			}
			if in.Advance != nil {
				s.Advance(time.Duration(*in.Advance))
			}
		}
		return jsonResponse(http.StatusOK, map[string]string{"now": s.Now().Format(time.RFC3339Nano)})

	case path == "/requests":
		if bad := methods(http.MethodGet, http.MethodDelete); bad != nil {
			return bad
		}
		if r.Method == http.MethodDelete {
			s.ResetRequests()
			return newResponse(http.StatusNoContent)
		}
		reqs := s.Requests()
		out := make([]requestJSON, 0, len(reqs))
		for _, q := range reqs {
			out = append(out, requestJSON{
				Time: q.Time.Format(time.RFC3339Nano), Method: q.Method, Path: q.Path,
				RawQuery: q.RawQuery, Endpoint: q.Endpoint, Scope: q.Scope,
				Status: q.Status, Fault: q.Fault, Body: string(q.Body),
			})
		}
		return jsonResponse(http.StatusOK, out)

	case path == "/requests/summary":
		if bad := methods(http.MethodGet); bad != nil {
			return bad
		}
		reqs := s.Requests()
		sum := struct {
			Total      int            `json:"total"`
			Writes     int            `json:"writes"`
			ByEndpoint map[string]int `json:"byEndpoint"`
			ByStatus   map[string]int `json:"byStatus"`
		}{ByEndpoint: map[string]int{}, ByStatus: map[string]int{}}
		for _, q := range reqs {
			sum.Total++
			if isWrite(q.Method) {
				sum.Writes++
			}
			sum.ByEndpoint[q.Endpoint]++
			sum.ByStatus[strconv.Itoa(q.Status)]++
		}
		return jsonResponse(http.StatusOK, sum)

	case path == "/faults":
		if bad := methods(http.MethodGet, http.MethodPost, http.MethodDelete); bad != nil {
			return bad
		}
		switch r.Method {
		case http.MethodDelete:
			s.ClearFaults()
			return newResponse(http.StatusNoContent)
		case http.MethodPost:
			var in faultJSON
			if err := decodeStrict(r, &in); err != nil {
				return controlError(http.StatusBadRequest, err)
			}
			f := Fault{
				Method: in.Method, Endpoint: in.Endpoint, Scope: in.Scope,
				OnCall: in.OnCall, Times: in.Times, Status: in.Status, Body: in.Body,
				Header: in.Header, Delay: time.Duration(in.Delay),
				ResetConnection: in.ResetConnection, AfterHandling: in.AfterHandling,
			}
			if err := validateFault(f); err != nil {
				return controlError(http.StatusBadRequest, err)
			}
			return jsonResponse(http.StatusCreated, map[string]int{"id": s.InjectFault(f)})
		}
		infos := s.Faults()
		out := make([]faultJSON, 0, len(infos))
		for _, fi := range infos {
			f := fi.Fault
			out = append(out, faultJSON{
				ID: fi.ID, Method: f.Method, Endpoint: f.Endpoint, Scope: f.Scope,
				OnCall: f.OnCall, Times: f.Times, Status: f.Status, Body: f.Body,
				Header: f.Header, Delay: duration(f.Delay),
				ResetConnection: f.ResetConnection, AfterHandling: f.AfterHandling,
				Seen: fi.Seen, Fired: fi.Fired,
			})
		}
		return jsonResponse(http.StatusOK, out)

	case len(seg) == 2 && seg[0] == "faults":
		if bad := methods(http.MethodDelete); bad != nil {
			return bad
		}
		id, err := strconv.Atoi(seg[1])
		if err != nil || !s.RemoveFault(id) {
			return errorResponse(http.StatusNotFound, "no such fault")
		}
		return newResponse(http.StatusNoContent)

	case path == "/deploy_tokens":
		if bad := methods(http.MethodGet, http.MethodPost); bad != nil {
			return bad
		}
		if r.Method == http.MethodPost {
			return s.controlSeed(r)
		}
		q := r.URL.Query()
		scope := q.Get("scope")
		if scope != "" {
			if _, _, err := ParseScope(scope); err != nil {
				return controlError(http.StatusBadRequest, err)
			}
		}
		reveal := q.Get("reveal") == "true"
		now := s.Now()
		out := []controlTokenJSON{}
		for _, t := range s.DeployTokens(scope) {
			out = append(out, s.controlToken(t, now, reveal))
		}
		return jsonResponse(http.StatusOK, out)

	case len(seg) == 3 && seg[0] == "deploy_tokens" && seg[2] == "revoke":
		if bad := methods(http.MethodPost); bad != nil {
			return bad
		}
		id, err := strconv.ParseInt(seg[1], 10, 64)
		if err != nil {
			return errorResponse(http.StatusBadRequest, "id must be an integer")
		}
		t, ok := s.revoke(id)
		if !ok {
			return errorResponse(http.StatusNotFound, "no such deploy token")
		}
		return jsonResponse(http.StatusOK, s.controlToken(t, s.Now(), false))

	case path == "/projects" || path == "/groups":
		if bad := methods(http.MethodPost); bad != nil {
			return bad
		}
		var in struct {
			ID   int64  `json:"id"`
			Path string `json:"path"`
		}
		if err := decodeStrict(r, &in); err != nil {
			return controlError(http.StatusBadRequest, err)
		}
		if in.ID <= 0 || strings.Trim(in.Path, "/") == "" {
			return errorResponse(http.StatusBadRequest, "id must be positive and path non-empty")
		}
		if path == "/projects" {
			s.AddProject(in.ID, in.Path)
		} else {
			s.AddGroup(in.ID, in.Path)
		}
		return jsonResponse(http.StatusCreated, in)

	case path == "/access_tokens":
		if bad := methods(http.MethodPost); bad != nil {
			return bad
		}
		return s.controlAccessToken(r)
	}
	return errorResponse(http.StatusNotFound, "404 Not Found")
}

func (s *Server) controlSeed(r *http.Request) *response {
	var in struct {
		Scope     string   `json:"scope"`
		Name      string   `json:"name"`
		Username  string   `json:"username"`
		Scopes    []string `json:"scopes"`
		ExpiresAt *string  `json:"expires_at"`
	}
	if err := decodeStrict(r, &in); err != nil {
		return controlError(http.StatusBadRequest, err)
	}
	if in.Name == "" || len(in.Scopes) == 0 {
		return errorResponse(http.StatusBadRequest, "name and scopes are required")
	}
	for _, sc := range in.Scopes {
		if !validDeployScope(sc) {
			return errorResponse(http.StatusBadRequest, fmt.Sprintf("unknown deploy token scope %q", sc))
		}
	}
	var exp *time.Time
	if in.ExpiresAt != nil && *in.ExpiresAt != "" {
		t, err := parseISO8601(*in.ExpiresAt)
		if err != nil {
			return controlError(http.StatusBadRequest, err)
		}
		exp = &t
	}
	t, err := s.seed(in.Scope, in.Name, in.Username, in.Scopes, exp)
	switch {
	case errors.Is(err, errNotFound):
		return controlError(http.StatusNotFound, err)
	case err != nil:
		return controlError(http.StatusBadRequest, err)
	}
	return jsonResponse(http.StatusCreated, s.controlToken(t, s.Now(), true))
}

func (s *Server) controlAccessToken(r *http.Request) *response {
	var in struct {
		Token     string                     `json:"token"`
		Scopes    []string                   `json:"scopes"`
		ExpiresAt *time.Time                 `json:"expires_at"`
		Revoked   bool                       `json:"revoked"`
		Roles     map[string]json.RawMessage `json:"roles"`
		Admin     bool                       `json:"admin"`
	}
	if err := decodeStrict(r, &in); err != nil {
		return controlError(http.StatusBadRequest, err)
	}
	if in.Token == "" {
		return errorResponse(http.StatusBadRequest, "token is required")
	}
	t := AccessToken{Token: in.Token, Scopes: in.Scopes, ExpiresAt: in.ExpiresAt, Revoked: in.Revoked, Admin: in.Admin, Roles: map[string]Role{}}
	for k, raw := range in.Roles {
		if _, _, err := ParseScope(k); err != nil {
			return controlError(http.StatusBadRequest, err)
		}
		var name string
		if err := json.Unmarshal(raw, &name); err != nil {
			name = string(raw) // a bare access level such as 40
		}
		role, err := ParseRole(name)
		if err != nil {
			return controlError(http.StatusBadRequest, err)
		}
		t.Roles[k] = role
	}
	s.AddAccessToken(t)
	return jsonResponse(http.StatusCreated, map[string]bool{"created": true})
}
