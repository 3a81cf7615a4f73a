package gitlabemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// param is one request parameter after Grape-like decoding: absent, null,
// a scalar, a list, or something no coercion accepts (an object).
type param struct {
	present bool
	null    bool
	isList  bool
	str     string
	list    []string
	bad     bool
}

type params map[string]param

// errUnsupportedType carries Grape's 415 message.
type errUnsupportedType string

func (e errUnsupportedType) Error() string {
	return fmt.Sprintf("The provided content-type '%s' is not supported.", string(e))
}

// errBadBody is Grape's answer to a body that does not parse as its type.
type errBadBody struct{}

func (errBadBody) Error() string { return "message body does not match declared format" }

// parseParams merges query parameters with the body, body winning, because
// Grape exposes both through one params hash.
func parseParams(r *http.Request, body []byte) (params, error) {
	p := params{}
	addForm(p, r.URL.Query())
	if len(bytes.TrimSpace(body)) == 0 {
		return p, nil
	}
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return p, addJSON(p, body)
	case mt == "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, errBadBody{}
		}
		addForm(p, v)
		return p, nil
	case mt == "multipart/form-data":
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(bytes.NewReader(body))
		if err := r2.ParseMultipartForm(maxBody); err != nil {
			return nil, errBadBody{}
		}
		addForm(p, r2.MultipartForm.Value)
		return p, nil
	case mt == "":
		// client-go always labels its bodies; an unlabeled body is treated
		// as JSON, which is what Grape falls back to for this API.
		return p, addJSON(p, body)
	}
	return nil, errUnsupportedType(ct)
}

func addForm(p params, v url.Values) {
	for k, vals := range v {
		name, isArray := strings.CutSuffix(k, "[]")
		if isArray || len(vals) > 1 {
			p[name] = param{present: true, isList: true, list: vals}
			continue
		}
		p[name] = param{present: true, str: vals[0]}
	}
}

// addJSON decodes a JSON body. A body of null, or any non-object, carries no
// parameters: client-go sends "null" when the options struct is nil.
func addJSON(p params, body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return errBadBody{}
	}
	if dec.More() {
		return errBadBody{}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	for k, x := range obj {
		p[k] = jsonParam(x)
	}
	return nil
}

func jsonParam(x any) param {
	switch v := x.(type) {
	case nil:
		return param{present: true, null: true}
	case []any:
		out := param{present: true, isList: true}
		for _, e := range v {
			s, ok := scalarString(e)
			if !ok {
				return param{present: true, bad: true}
			}
			out.list = append(out.list, s)
		}
		return out
	default:
		s, ok := scalarString(v)
		if !ok {
			return param{present: true, bad: true}
		}
		return param{present: true, str: s}
	}
}

func scalarString(x any) (string, bool) {
	switch v := x.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}

// createInput is a validated create request.
type createInput struct {
	name      string
	scopes    []string
	expiresAt *time.Time
	username  string
}

var usernameRE = regexp.MustCompile(`\A[A-Za-z0-9.+_-]+\z`)

// validateCreate applies Grape's parameter checks (collected in declaration
// order and joined with ", ", answered as {"error"}) and then the model
// validations (joined as a sentence, answered as {"message"}).
func validateCreate(p params) (createInput, *response) {
	var in createInput
	var errs []string

	name := p["name"]
	switch {
	case !name.present:
		errs = append(errs, "name is missing")
	case name.bad || name.isList:
		errs = append(errs, "name is invalid")
	default:
		in.name = name.str
	}

	sc := p["scopes"]
	switch {
	case !sc.present:
		errs = append(errs, "scopes is missing")
	case sc.bad:
		errs = append(errs, "scopes is invalid")
	default:
		raw := sc.list
		if !sc.isList && !sc.null {
			raw = []string{sc.str}
		}
		// Comma-separated strings are split, in arrays too, like GitLab's
		// CommaSeparatedToArray coercion.
		for _, item := range raw {
			for _, s := range strings.Split(item, ",") {
				if s = strings.TrimSpace(s); s != "" {
					in.scopes = append(in.scopes, s)
				}
			}
		}
		for _, s := range in.scopes {
			if !validDeployScope(s) {
				errs = append(errs, "scopes does not have a valid value")
				break
			}
		}
	}

	ex := p["expires_at"]
	switch {
	case !ex.present || ex.null || (!ex.isList && !ex.bad && ex.str == ""):
	case ex.bad || ex.isList:
		errs = append(errs, "expires_at is invalid")
	default:
		t, err := parseISO8601(ex.str)
		if err != nil {
			errs = append(errs, "expires_at is invalid")
		} else {
			in.expiresAt = &t
		}
	}

	un := p["username"]
	switch {
	case !un.present || un.null:
	case un.bad || un.isList:
		errs = append(errs, "username is invalid")
	default:
		in.username = un.str
	}

	if len(errs) > 0 {
		return in, errorResponse(http.StatusBadRequest, strings.Join(errs, ", "))
	}

	var model []string
	if len(in.scopes) == 0 {
		model = append(model, "Scopes can't be blank")
	}
	if strings.TrimSpace(in.name) == "" {
		model = append(model, "Name can't be blank")
	} else if utf8.RuneCountInString(in.name) > 255 {
		model = append(model, "Name is too long (maximum is 255 characters)")
	}
	if in.username != "" {
		if utf8.RuneCountInString(in.username) > 255 {
			model = append(model, "Username is too long (maximum is 255 characters)")
		}
		if !usernameRE.MatchString(in.username) {
			model = append(model, "Username can contain only letters, digits, '_', '-', '+', and '.'")
		}
	}
	if len(model) > 0 {
		return in, messageResponse(http.StatusBadRequest, toSentence(model))
	}
	return in, nil
}

// toSentence is Rails' Array#to_sentence, which GitLab uses to join model
// errors.
func toSentence(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	case 2:
		return s[0] + " and " + s[1]
	}
	return strings.Join(s[:len(s)-1], ", ") + ", and " + s[len(s)-1]
}

var isoLayouts = []string{
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseISO8601 accepts the ISO 8601 date-times GitLab's DateTime coercion
// takes from API clients: a date alone means 00:00 UTC, a missing offset
// means UTC, and an offset shifts the instant (stored in UTC).
func parseISO8601(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range isoLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not ISO 8601: %q", s)
}

// paging is validated pagination input.
type paging struct {
	page, perPage int
	active        bool
}

// parsePaging mirrors GitLab's pagination params: page defaults to 1 (values
// below 1 act as 1, as Kaminari does), per_page defaults to 20, is capped at
// 100 and rejects 0; active is a Grape Boolean.
func parsePaging(q url.Values) (paging, *response) {
	pg := paging{page: 1, perPage: 20}
	var errs []string
	if v, ok := q["page"]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v[len(v)-1]))
		switch {
		case err != nil:
			errs = append(errs, "page is invalid")
		case n > 1:
			pg.page = n
		}
	}
	if v, ok := q["per_page"]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v[len(v)-1]))
		switch {
		case err != nil:
			errs = append(errs, "per_page is invalid")
		case n <= 0:
			errs = append(errs, "per_page has a value not allowed")
		case n > 100:
			pg.perPage = 100
		default:
			pg.perPage = n
		}
	}
	if v, ok := q["active"]; ok {
		switch strings.ToLower(strings.TrimSpace(v[len(v)-1])) {
		case "true", "t", "1", "yes", "y", "on":
			pg.active = true
		case "false", "f", "0", "no", "n", "off", "":
		default:
			errs = append(errs, "active is invalid")
		}
	}
	if len(errs) > 0 {
		return pg, errorResponse(http.StatusBadRequest, strings.Join(errs, ", "))
	}
	return pg, nil
}
