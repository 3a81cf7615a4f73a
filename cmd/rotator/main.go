// Command rotator keeps a GitLab deploy token in Kubernetes image pull
// Secrets fresh. This package only wires the internal packages together.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv))
}
