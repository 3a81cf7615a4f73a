package config

import (
	"encoding/json"
	"fmt"

	"sigs.k8s.io/yaml"
)

// Redacted renders the effective config as YAML for `rotator check-config`:
// defaults and target fallbacks filled in, and the API token replaced by its
// length and source so an operator can check the right file was mounted.
func (c *Config) Redacted() string {
	view := *c
	view.Targets = c.EffectiveTargets()
	js, err := json.Marshal(view)
	if err != nil {
		return "# cannot render config: " + err.Error() + "\n"
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		return "# cannot render config: " + err.Error() + "\n"
	}
	if gl, ok := doc["gitlab"].(map[string]any); ok {
		n := 0
		if c.loaded != nil && c.loaded.token != nil {
			n = len(c.loaded.token.v)
		}
		gl["apiToken"] = fmt.Sprintf("<redacted, %d bytes from %s>", n, c.GitLab.TokenFile)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "# cannot render config: " + err.Error() + "\n"
	}
	return string(out)
}
