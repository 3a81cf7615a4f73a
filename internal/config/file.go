package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

const maxFileSize = 1 << 20

var durationType = reflect.TypeFor[Duration]()

// loadFile decodes the YAML file strictly. It walks the generic document
// itself rather than using json.Unmarshal, so every error can name the full
// YAML path ("token.renewBefor") and the file.
func (c *Config) loadFile(path, origin string) error {
	data, err := readLimited(path, maxFileSize)
	if err != nil {
		p := err.Error()
		if origin != "" {
			p += " (set " + origin + ")"
		}
		return &ValidationError{Field: "read " + path, Problem: p}
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return &ValidationError{Field: path, Problem: "invalid YAML: " + yamlError(err)}
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return &ValidationError{Field: path, Problem: "invalid YAML: " + err.Error()}
	}
	if doc == nil {
		return nil // empty file: everything from env, flags and defaults
	}
	if _, ok := doc.(map[string]any); !ok {
		return &ValidationError{Field: path, Problem: "the top level must be a mapping of config fields, not " + describe(doc)}
	}
	d := fileDecoder{c: c, file: path}
	return d.decode(reflect.ValueOf(c).Elem(), doc, "")
}

// readLimited reads a file and reduces errors to "<cause>" without the
// operation and path that *PathError adds, so messages can say it once.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, bareError(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, bareError(err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

func bareError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// yamlError flattens go-yaml's multi-line messages into one line.
func yamlError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "error converting YAML to JSON: ")
	s = strings.TrimPrefix(s, "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:")
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

type fileDecoder struct {
	c    *Config
	file string
}

func (d *fileDecoder) fail(path, problem string) error {
	return &ValidationError{Field: path, Problem: problem + " (in " + d.file + ")"}
}

// decode stores raw into v. A YAML null leaves the field unset, so defaults
// still apply.
func (d *fileDecoder) decode(v reflect.Value, raw any, path string) error {
	if raw == nil {
		return nil
	}
	// Record where leaves and list items came from; a parent mapping's
	// origin would wrongly mark its unset children as set.
	if path != "" && (v.Kind() != reflect.Struct || strings.HasSuffix(path, "]")) {
		d.c.setOrigin(path, "in "+d.file)
	}
	if v.Type() == durationType {
		s, ok := raw.(string)
		if !ok {
			return d.fail(path, `must be a duration such as "30d" or "36h", not `+describe(raw))
		}
		dur, err := ParseDuration(s)
		if err != nil {
			return d.fail(path, err.Error())
		}
		v.SetInt(int64(dur))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if n, isNum := raw.(json.Number); isNum && path == "gitlab.project" {
			// Project ids are naturally written unquoted.
			if _, err := n.Int64(); err == nil {
				s, ok = n.String(), true
			}
		}
		if !ok {
			return d.fail(path, "must be a string, not "+describe(raw))
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			return d.fail(path, "must be true or false, not "+describe(raw))
		}
		v.SetBool(b)
	case reflect.Slice:
		items, ok := raw.([]any)
		if !ok {
			return d.fail(path, "must be a list, not "+describe(raw))
		}
		s := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, item := range items {
			if err := d.decode(s.Index(i), item, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return d.fail(orRoot(path), "must be a mapping, not "+describe(raw))
		}
		byName := map[string]int{}
		for i := 0; i < v.NumField(); i++ {
			if name := jsonName(v.Type().Field(i)); name != "" {
				byName[name] = i
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sub := k
			if path != "" {
				sub = path + "." + k
			}
			i, ok := byName[k]
			if !ok {
				return d.fail(sub, "unknown field"+suggest(k, byName))
			}
			if err := d.decode(v.Field(i), m[k], sub); err != nil {
				return err
			}
		}
	default:
		return d.fail(path, "unsupported field type") // unreachable with the types above
	}
	return nil
}

func orRoot(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// describe names a YAML value's kind without echoing it: a misplaced value
// could be a credential.
func describe(raw any) string {
	switch raw.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case bool:
		return "a boolean (quote yes/no/on/off to use them as text)"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	}
	return fmt.Sprintf("%T", raw)
}

// suggest points at the intended key for a typo, else lists the valid ones.
func suggest(key string, valid map[string]int) string {
	names := make([]string, 0, len(valid))
	for n := range valid {
		names = append(names, n)
	}
	sort.Strings(names)
	best, bestDist := "", 3
	for _, n := range names {
		dist := editDistance(strings.ToLower(key), strings.ToLower(n))
		if dist < bestDist {
			best, bestDist = n, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (valid: " + strings.Join(names, ", ") + ")"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
