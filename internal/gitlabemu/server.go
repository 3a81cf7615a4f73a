package gitlabemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Logical endpoint names used by Fault.Endpoint and Request.Endpoint.
const (
	EndpointListDeployTokens    = "list_deploy_tokens"     // GET /projects|groups/:id/deploy_tokens
	EndpointListAllDeployTokens = "list_all_deploy_tokens" // GET /deploy_tokens
	EndpointGetDeployToken      = "get_deploy_token"       // GET /projects|groups/:id/deploy_tokens/:token_id
	EndpointCreateDeployToken   = "create_deploy_token"    // POST /projects|groups/:id/deploy_tokens
	EndpointDeleteDeployToken   = "delete_deploy_token"    // DELETE /projects|groups/:id/deploy_tokens/:token_id
	// GET /personal_access_tokens/self: the caller's own API token.
	EndpointGetPersonalAccessTokenSelf = "get_personal_access_token_self"
	// GET /jwt/auth: the container registry's token service (not under /api/v4).
	EndpointJWTAuth = "jwt_auth"
	EndpointUnknown = "unknown" // no route, or a method the route does not allow
)

// maxBody bounds what the emulator buffers per request; GitLab's own limits
// are far larger, but nothing the rotator sends comes close to this.
const maxBody = 1 << 20

// Server is the emulator. It is safe for concurrent use; all state sits
// behind one mutex because requests are tiny and faithfulness matters more
// than throughput.
type Server struct {
	mu          sync.Mutex
	now         time.Time
	projects    map[int64]string
	groups      map[int64]string
	pats        map[string]AccessToken
	nextPATID   int64          // ids of API tokens, assigned on first AddAccessToken
	tokens      []*DeployToken // ordered by id; DELETE removes rows
	nextTokenID int64
	faults      []*faultState
	nextFaultID int
	requests    []*Request

	jwtOnce sync.Once  // makes jwt on first use, see signer
	jwt     *jwtSigner // registry token signing key
}

// New returns an empty emulator whose clock is frozen at the current time.
// The clock never ticks by itself so that tests are deterministic; move it
// with SetNow or Advance.
func New() *Server {
	return &Server{
		now:      time.Now().UTC().Truncate(time.Second),
		projects: map[int64]string{},
		groups:   map[int64]string{},
		pats:     map[string]AccessToken{},
	}
}

// Now is the emulator's clock, which drives token expiry.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

// SetNow moves the clock to t (in UTC), backwards or forwards.
func (s *Server) SetNow(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = t.UTC()
}

// Advance moves the clock by d, which may be negative.
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = s.now.Add(d)
}

// response is a fully buffered answer. Handlers build one instead of writing
// to the connection so that faults can replace it after state has changed and
// the recorder always knows the final status.
type response struct {
	status int
	header http.Header
	body   []byte
}

func newResponse(status int) *response {
	return &response{status: status, header: http.Header{}}
}

func jsonResponse(status int, v any) *response {
	b, err := json.Marshal(v)
	if err != nil {
		// Only emulator bugs get here; make them loud.
		panic(fmt.Sprintf("gitlabemu: marshal response: %v", err))
	}
	r := newResponse(status)
	r.header.Set("Content-Type", "application/json")
	r.body = b
	return r
}

// Body shapes GitLab uses: {"message": ...} for most errors, {"error": ...}
// for parameter validation and routing errors.
func messageResponse(status int, msg string) *response {
	return jsonResponse(status, map[string]string{"message": msg})
}

func errorResponse(status int, msg string) *response {
	return jsonResponse(status, map[string]string{"error": msg})
}

func (r *response) write(w http.ResponseWriter, head bool) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	w.WriteHeader(r.status)
	if !head && len(r.body) > 0 {
		_, _ = w.Write(r.body)
	}
}

// Request is one recorded API request. Control-API requests are not recorded.
type Request struct {
	Time     time.Time // emulator clock when the request arrived
	Method   string
	Path     string // escaped path, e.g. /api/v4/projects/games%2Ffleet/deploy_tokens
	RawQuery string
	Endpoint string // logical endpoint name, see the Endpoint* constants
	Scope    string // resolved "project:<id>"/"group:<id>", "" if none or unknown
	// Status is what the client was answered: 0 when a fault reset the
	// connection, 499 when the client gave up during a fault delay.
	Status int
	Fault  int    // id of the fault that replaced or delayed the answer, 0 if none
	Body   []byte // request body, secrets included: this is test-only
}

// StatusClientClosed marks requests whose client went away while a fault
// delay was running (nginx's convention).
const StatusClientClosed = 499

func isWrite(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// Requests returns a copy of the recorded API requests in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = *r
		out[i].Body = append([]byte(nil), r.Body...)
	}
	return out
}

// ResetRequests forgets all recorded requests, so a test can count only the
// calls made by the step it is checking.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// WriteCount counts recorded POST/PUT/PATCH/DELETE API requests, whatever
// their outcome: a rotator that should be idle must not even try to write.
func (s *Server) WriteCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if isWrite(r.Method) {
			n++
		}
	}
	return n
}

// ServeHTTP serves the REST API and the control API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/-/emulator" || strings.HasPrefix(r.URL.Path, "/-/emulator/") {
		s.serveControl(w, r)
		return
	}

	body, tooLarge := readBody(r)
	rt := s.route(r)

	s.mu.Lock()
	rec := &Request{
		Time:     s.now,
		Method:   r.Method,
		Path:     r.URL.EscapedPath(),
		RawQuery: r.URL.RawQuery,
		Endpoint: rt.endpoint,
		Scope:    rt.scope,
		Body:     body,
	}
	s.requests = append(s.requests, rec)
	plan := s.matchFaults(r.Method, rt)
	s.mu.Unlock()

	finish := func(status, fault int) {
		s.mu.Lock()
		rec.Status = status
		rec.Fault = fault
		s.mu.Unlock()
	}

	// The fault the record names: the one that decided the answer if any,
	// else the first that only delayed or decorated it.
	faultID := plan.passive
	if plan.answer != nil {
		faultID = plan.answer.id
	}

	if plan.delayBefore > 0 && !sleepCtx(r, plan.delayBefore) {
		finish(StatusClientClosed, faultID)
		return
	}

	ans := plan.answer
	var resp *response
	if ans == nil || ans.AfterHandling {
		if tooLarge {
			resp = messageResponse(http.StatusRequestEntityTooLarge, "413 Request Entity Too Large")
		} else {
			resp = s.handleAPI(r, rt, body)
		}
	}

	if plan.delayAfter > 0 && !sleepCtx(r, plan.delayAfter) {
		finish(StatusClientClosed, faultID)
		return
	}

	switch {
	case ans == nil:
		for k, v := range plan.headers {
			resp.header.Set(k, v)
		}
	case ans.ResetConnection:
		finish(0, faultID)
		resetConnection(w)
		return
	default:
		resp = ans.response()
	}
	resp.write(w, r.Method == http.MethodHead)
	finish(resp.status, faultID)
}

func readBody(r *http.Request) (body []byte, tooLarge bool) {
	if r.Body == nil {
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return b, false
	}
	return b, len(b) > maxBody
}

// sleepCtx waits d unless the client goes away first; it reports whether
// the full delay elapsed.
func sleepCtx(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// resetConnection drops the TCP connection without an answer, which is what
// a crashed proxy or a network cut looks like to the client.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 or a wrapper that cannot hijack: net/http aborts the stream.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0) // send RST rather than FIN, like a real reset
	}
	_ = conn.Close()
}

var errNotFound = errors.New("not found")
