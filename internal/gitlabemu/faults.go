package gitlabemu

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Fault makes the emulator misbehave on matching API requests. Faults never
// touch the control API.
type Fault struct {
	Method   string // "" = any
	Endpoint string // an Endpoint* name, "" = any
	Scope    string // "project:<id>" or "group:<id>", "" = any
	OnCall   int    // fire on the Nth matching request since injection (1-based); 0 = from the first
	// Times is how many consecutive matching requests it fires on once it has
	// started; 0 means once if OnCall > 0 and forever if OnCall == 0.
	Times  int
	Status int    // status to answer; 0 = keep the real answer (Delay/Header only)
	Body   string // default: GitLab-shaped body for Status
	// Header adds or overrides response headers: on the fault's own answer
	// when Status is set, otherwise on the real answer (e.g. a low
	// RateLimit-Limit to exercise client-side throttling).
	Header map[string]string
	// Delay sleeps before answering; the request is dropped if the client
	// gives up first. Without AfterHandling nothing has happened yet.
	Delay           time.Duration
	ResetConnection bool // close the connection without answering
	// AfterHandling runs the real handler first, so state changes, and only
	// then delays or replaces the answer: "created, but the response was lost".
	AfterHandling bool
}

// FaultInfo is an installed fault with its counters, for inspection.
type FaultInfo struct {
	ID    int
	Fault Fault
	Seen  int // matching requests so far
	Fired int // requests it fired on
}

type faultState struct {
	Fault
	id    int
	seen  int
	fired int
}

// limit is the number of firings allowed, -1 for unlimited.
func (f *faultState) limit() int {
	switch {
	case f.Times > 0:
		return f.Times
	case f.OnCall > 0:
		return 1
	}
	return -1
}

func (f *faultState) matches(method string, rt route) bool {
	return (f.Method == "" || strings.EqualFold(f.Method, method)) &&
		(f.Endpoint == "" || f.Endpoint == rt.endpoint) &&
		(f.Scope == "" || f.Scope == rt.scope)
}

// InjectFault installs a fault and returns its id. Faults are consulted in
// id order; every matching fault counts the request, delays of all firing
// faults add up, and the first firing fault with a Status or
// ResetConnection decides the answer. It panics on a fault that could never
// do anything (unknown Endpoint, malformed Scope, no effect), because such a
// fault would let a test pass without exercising the failure it names.
func (s *Server) InjectFault(f Fault) (id int) {
	if err := validateFault(f); err != nil {
		panic("gitlabemu: InjectFault: " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextFaultID++
	f.Header = cloneHeaderMap(f.Header)
	s.faults = append(s.faults, &faultState{Fault: f, id: s.nextFaultID})
	return s.nextFaultID
}

// RemoveFault uninstalls one fault; it reports whether it existed.
func (s *Server) RemoveFault(id int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.id == id {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
			return true
		}
	}
	return false
}

// ClearFaults uninstalls all faults.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Faults lists installed faults, exhausted ones included, so a test can
// assert that a fault actually fired.
func (s *Server) Faults() []FaultInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FaultInfo, 0, len(s.faults))
	for _, f := range s.faults {
		ff := f.Fault
		ff.Header = cloneHeaderMap(f.Header)
		out = append(out, FaultInfo{ID: f.id, Fault: ff, Seen: f.seen, Fired: f.fired})
	}
	return out
}

func cloneHeaderMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// faultPlan is what the firing faults ask of one request.
type faultPlan struct {
	delayBefore time.Duration
	delayAfter  time.Duration
	headers     map[string]string // from firing faults that keep the real answer
	passive     int               // first firing fault that did not replace the answer
	answer      *faultState       // a copy, safe to use without the lock
}

// matchFaults counts the request against every fault and collects the ones
// that fire. Caller holds s.mu.
func (s *Server) matchFaults(method string, rt route) faultPlan {
	var plan faultPlan
	for _, f := range s.faults {
		if !f.matches(method, rt) {
			continue
		}
		f.seen++
		start := max(f.OnCall, 1)
		if f.seen < start || (f.limit() >= 0 && f.fired >= f.limit()) {
			continue
		}
		f.fired++
		if f.Delay > 0 {
			if f.AfterHandling {
				plan.delayAfter += f.Delay
			} else {
				plan.delayBefore += f.Delay
			}
		}
		if f.Status != 0 || f.ResetConnection {
			if plan.answer == nil {
				c := *f
				c.Header = cloneHeaderMap(f.Header)
				plan.answer = &c
			}
			continue
		}
		if plan.passive == 0 {
			plan.passive = f.id
		}
		for k, v := range f.Header {
			if plan.headers == nil {
				plan.headers = map[string]string{}
			}
			plan.headers[k] = v
		}
	}
	return plan
}

// defaultRateLimit is deliberately high: client-go throttles itself to 66%
// of the first RateLimit-Limit it sees, and a realistic low value would slow
// every later test call.
const defaultRateLimit = 2000

// response renders the fault's answer with GitLab-shaped defaults.
func (f *faultState) response() *response {
	resp := newResponse(f.Status)
	switch {
	case f.Body != "":
		resp.body = []byte(f.Body)
		if json.Valid(resp.body) {
			resp.header.Set("Content-Type", "application/json")
		} else {
			resp.header.Set("Content-Type", "text/plain; charset=utf-8")
		}
	case f.Status == http.StatusTooManyRequests:
		resp.body = []byte("Retry later\n")
		resp.header.Set("Content-Type", "text/plain")
	case f.Status == http.StatusNoContent || f.Status == http.StatusNotModified || f.Status < 200:
	default:
		resp.body, _ = json.Marshal(map[string]string{"message": strconv.Itoa(f.Status) + " " + http.StatusText(f.Status)})
		resp.header.Set("Content-Type", "application/json")
	}
	if f.Status == http.StatusTooManyRequests {
		// Rack::Attack's headers. The reset uses the wall clock, not the
		// emulator clock: client-go sleeps until that wall-clock instant, so
		// a moved emulator clock must not make it wait for days.
		reset := time.Now().Add(time.Second).Truncate(time.Second)
		resp.header.Set("RateLimit-Name", "throttle_authenticated_api")
		resp.header.Set("RateLimit-Limit", strconv.Itoa(defaultRateLimit))
		resp.header.Set("RateLimit-Observed", strconv.Itoa(defaultRateLimit+1))
		resp.header.Set("RateLimit-Remaining", "0")
		resp.header.Set("RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
		resp.header.Set("RateLimit-ResetTime", reset.UTC().Format(http.TimeFormat))
		resp.header.Set("Retry-After", "1")
	}
	for k, v := range f.Header {
		resp.header.Set(k, v)
	}
	return resp
}
