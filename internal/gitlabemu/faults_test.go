package gitlabemu

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

func TestFaultSchedule(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault Fault
		want  []int // status of successive list calls
	}{
		{"on 2nd call once", Fault{Endpoint: EndpointListDeployTokens, OnCall: 2, Status: 500}, []int{200, 500, 200, 200}},
		{"on 2nd call for 2", Fault{Endpoint: EndpointListDeployTokens, OnCall: 2, Times: 2, Status: 503}, []int{200, 503, 503, 200}},
		{"first 2 calls", Fault{Endpoint: EndpointListDeployTokens, Times: 2, Status: 502}, []int{502, 502, 200, 200}},
		{"forever", Fault{Status: 500}, []int{500, 500, 500, 500}},
		{"other endpoint never fires", Fault{Endpoint: EndpointCreateDeployToken, Status: 500}, []int{200, 200, 200, 200}},
		{"other method never fires", Fault{Method: "DELETE", Status: 500}, []int{200, 200, 200, 200}},
		{"method is case-insensitive", Fault{Method: "get", OnCall: 3, Status: 500}, []int{200, 200, 500, 200}},
		{"other scope never fires", Fault{Scope: "project:8", Status: 500}, []int{200, 200, 200, 200}},
		{"matching scope fires", Fault{Scope: "project:7", OnCall: 1, Status: 500}, []int{500, 200, 200, 200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			id := e.emu.InjectFault(tc.fault)
			var got []int
			for range tc.want {
				got = append(got, e.do("GET", "/api/v4/projects/games%2Ffleet/deploy_tokens", patMaintainer, "", "").status)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("statuses = %v, want %v", got, tc.want)
			}
			fired := 0
			for _, s := range tc.want {
				if s != 200 {
					fired++
				}
			}
			infos := e.emu.Faults()
			if len(infos) != 1 || infos[0].ID != id || infos[0].Fired != fired {
				t.Errorf("fault info = %+v, want fired=%d", infos, fired)
			}
			for _, r := range e.emu.Requests() {
				if (r.Status != 200) != (r.Fault == id) {
					t.Errorf("request %+v: Fault=%d, want it set exactly when the fault answered", r, r.Fault)
				}
			}
		})
	}
}

func TestFaultBodies(t *testing.T) {
	e := newEnv(t)
	path := "/api/v4/projects/7/deploy_tokens"

	e.emu.InjectFault(Fault{OnCall: 1, Status: 500})
	r := e.do("GET", path, patMaintainer, "", "")
	if r.status != 500 || r.body != `{"message":"500 Internal Server Error"}` || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("500 default = %d %s %v", r.status, r.body, r.header)
	}

	e.emu.InjectFault(Fault{OnCall: 1, Status: 503}) // counts from its own injection
	if r := e.do("GET", path, patMaintainer, "", ""); r.body != `{"message":"503 Service Unavailable"}` {
		t.Errorf("503 default = %s", r.body)
	}

	e.emu.ClearFaults()
	e.emu.InjectFault(Fault{OnCall: 1, Status: 429})
	before := time.Now()
	r = e.do("GET", path, patMaintainer, "", "")
	if r.status != 429 || r.body != "Retry later\n" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Errorf("429 default = %d %q %v", r.status, r.body, r.header)
	}
	if r.header.Get("RateLimit-Limit") != "2000" || r.header.Get("RateLimit-Remaining") != "0" || r.header.Get("Retry-After") == "" ||
		r.header.Get("RateLimit-Name") == "" || r.header.Get("RateLimit-Observed") == "" || r.header.Get("RateLimit-ResetTime") == "" {
		t.Errorf("429 headers = %v", r.header)
	}
	reset, err := strconv.ParseInt(r.header.Get("RateLimit-Reset"), 10, 64)
	if err != nil || time.Unix(reset, 0).Before(before) || time.Unix(reset, 0).After(before.Add(3*time.Second)) {
		t.Errorf("RateLimit-Reset %q should be a wall-clock epoch just ahead of now", r.header.Get("RateLimit-Reset"))
	}
	// Normal answers must not carry a RateLimit-Limit.
	if r := e.do("GET", path, patMaintainer, "", ""); r.header.Get("RateLimit-Limit") != "" {
		t.Errorf("normal answer has RateLimit-Limit %q", r.header.Get("RateLimit-Limit"))
	}

	e.emu.InjectFault(Fault{OnCall: 1, Status: 429, Body: `{"message":{"error":"This endpoint has been requested too many times. Try again later."}}`,
		Header: map[string]string{"RateLimit-Limit": "60"}})
	r = e.do("GET", path, patMaintainer, "", "")
	if r.header.Get("Content-Type") != "application/json" || r.header.Get("RateLimit-Limit") != "60" || !strings.Contains(r.body, "too many times") {
		t.Errorf("custom body/header = %v %s", r.header, r.body)
	}

	e.emu.InjectFault(Fault{OnCall: 1, Status: 502, Body: "<html>bad gateway</html>"})
	if r := e.do("GET", path, patMaintainer, "", ""); r.status != 502 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Errorf("non-JSON body = %d %v", r.status, r.header)
	}
}

func TestHeaderOnlyFaultDecoratesRealAnswer(t *testing.T) {
	e := newEnv(t)
	e.emu.SeedDeployToken("project:7", "n", []string{"read_registry"}, nil)
	id := e.emu.InjectFault(Fault{Endpoint: EndpointListDeployTokens, OnCall: 1, Header: map[string]string{"RateLimit-Limit": "60"}})
	r := e.do("GET", "/api/v4/projects/7/deploy_tokens", patMaintainer, "", "")
	if r.status != 200 || !strings.Contains(r.body, `"name":"n"`) || r.header.Get("RateLimit-Limit") != "60" || r.header.Get("X-Total") != "1" {
		t.Errorf("decorated answer = %d %s %v", r.status, r.body, r.header)
	}
	if reqs := e.emu.Requests(); reqs[0].Fault != id || reqs[0].Status != 200 {
		t.Errorf("recorded %+v", reqs[0])
	}
	if r := e.do("GET", "/api/v4/projects/7/deploy_tokens", patMaintainer, "", ""); r.header.Get("RateLimit-Limit") != "" {
		t.Error("one-shot header fault fired twice")
	}
}

func TestFaultAfterHandling(t *testing.T) {
	name, scopes := "n", []string{"read_registry"}
	opt := &gitlab.CreateProjectDeployTokenOptions{Name: &name, Scopes: &scopes}
	for _, tc := range []struct {
		name     string
		fault    Fault
		wantRows int
		check    func(t *testing.T, err error)
	}{
		{"status before handling changes nothing", Fault{Endpoint: EndpointCreateDeployToken, OnCall: 1, Status: 502}, 0,
			func(t *testing.T, err error) {
				if !gitlab.HasStatusCode(err, 502) {
					t.Errorf("err = %v, want 502", err)
				}
			}},
		{"status after handling keeps the token", Fault{Endpoint: EndpointCreateDeployToken, OnCall: 1, Status: 502, AfterHandling: true}, 1,
			func(t *testing.T, err error) {
				if !gitlab.HasStatusCode(err, 502) {
					t.Errorf("err = %v, want 502", err)
				}
			}},
		{"reset before handling", Fault{Endpoint: EndpointCreateDeployToken, OnCall: 1, ResetConnection: true}, 0,
			func(t *testing.T, err error) {
				var er *gitlab.ErrorResponse
				if err == nil || errors.As(err, &er) {
					t.Errorf("err = %v, want a transport error", err)
				}
			}},
		{"reset after handling: created, response lost", Fault{Endpoint: EndpointCreateDeployToken, OnCall: 1, ResetConnection: true, AfterHandling: true}, 1,
			func(t *testing.T, err error) {
				var er *gitlab.ErrorResponse
				if err == nil || errors.As(err, &er) {
					t.Errorf("err = %v, want a transport error", err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			id := e.emu.InjectFault(tc.fault)
			_, _, err := e.client(patMaintainer).DeployTokens.CreateProjectDeployToken(7, opt)
			tc.check(t, err)
			if rows := e.emu.DeployTokens("project:7"); len(rows) != tc.wantRows {
				t.Errorf("rows = %d, want %d", len(rows), tc.wantRows)
			}
			reqs := e.emu.Requests()
			if len(reqs) != 1 || reqs[0].Fault != id || reqs[0].Endpoint != EndpointCreateDeployToken {
				t.Errorf("recorded %+v", reqs)
			}
			if tc.fault.ResetConnection && reqs[0].Status != 0 {
				t.Errorf("reset recorded as %d, want 0", reqs[0].Status)
			}
			// The fault was single-shot: the next create works.
			if _, _, err := e.client(patMaintainer).DeployTokens.CreateProjectDeployToken(7, opt); err != nil {
				t.Errorf("second create: %v", err)
			}
		})
	}
}

func TestFaultDelay(t *testing.T) {
	name, scopes := "n", []string{"read_registry"}
	opt := &gitlab.CreateProjectDeployTokenOptions{Name: &name, Scopes: &scopes}

	t.Run("client gives up before handling", func(t *testing.T) {
		e := newEnv(t)
		e.emu.InjectFault(Fault{Endpoint: EndpointCreateDeployToken, Delay: 10 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, err := e.client(patMaintainer).DeployTokens.CreateProjectDeployToken(7, opt, gitlab.WithContext(ctx))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
		if time.Since(start) > 5*time.Second {
			t.Error("delay ignored the client going away")
		}
		waitFor(t, func() bool { r := e.emu.Requests(); return len(r) == 1 && r[0].Status == StatusClientClosed })
		if n := len(e.emu.DeployTokens("")); n != 0 {
			t.Errorf("rows = %d, want 0: the handler must not run", n)
		}
	})

	t.Run("client gives up after handling", func(t *testing.T) {
		e := newEnv(t)
		e.emu.InjectFault(Fault{Endpoint: EndpointCreateDeployToken, Delay: 10 * time.Second, AfterHandling: true})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, _, err := e.client(patMaintainer).DeployTokens.CreateProjectDeployToken(7, opt, gitlab.WithContext(ctx))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
		waitFor(t, func() bool { r := e.emu.Requests(); return len(r) == 1 && r[0].Status == StatusClientClosed })
		if n := len(e.emu.DeployTokens("")); n != 1 {
			t.Errorf("rows = %d, want 1: created but never answered", n)
		}
	})

	t.Run("delay only keeps the real answer", func(t *testing.T) {
		e := newEnv(t)
		e.emu.InjectFault(Fault{Endpoint: EndpointListDeployTokens, Delay: 50 * time.Millisecond})
		start := time.Now()
		if _, _, err := e.client(patMaintainer).DeployTokens.ListProjectDeployTokens(7, nil); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) < 50*time.Millisecond {
			t.Error("answered before the delay")
		}
	})
}

func TestClientRetriesThroughFault(t *testing.T) {
	e := newEnv(t)
	e.emu.InjectFault(Fault{Endpoint: EndpointListDeployTokens, OnCall: 1, Status: 500})
	c, err := gitlab.NewClient(patMaintainer, gitlab.WithBaseURL(e.ts.URL)) // default retries
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.DeployTokens.ListProjectDeployTokens(7, nil); err != nil {
		t.Fatalf("retried list: %v", err)
	}
	reqs := e.emu.Requests()
	if len(reqs) != 2 || reqs[0].Status != 500 || reqs[1].Status != 200 {
		t.Errorf("requests = %+v, want a 500 then a 200", reqs)
	}
}

func TestInjectFaultRejectsUselessFaults(t *testing.T) {
	for _, f := range []Fault{
		{Endpoint: "create_deploy_tokens", Status: 500}, // typo
		{Scope: "project7", Status: 500},
		{Endpoint: EndpointCreateDeployToken}, // does nothing
		{Status: 1000},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("InjectFault(%+v) did not panic", f)
				}
			}()
			New().InjectFault(f)
		}()
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
