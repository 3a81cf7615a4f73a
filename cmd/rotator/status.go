package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rotator-dev/rotator/internal/config"
	"github.com/rotator-dev/rotator/internal/rotation"
)

func (a *app) statusCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each target's Secret, token and ServiceAccounts, and the managed tokens in GitLab",
		Long: `status reads GitLab and the cluster exactly as a cycle does and writes nothing.
For each target it shows whether the Secret exists, which token it holds, when
that token expires and will be renewed, and whether each ServiceAccount lists
the Secret; then the managed tokens in GitLab and what a cycle would do now.

Exit status: 0 when everything is in place, 1 when anything is out of place
(or GitLab or the cluster could not be read), 2 for bad configuration.`,
		Example: `  rotator status --config /etc/rotator/config.yaml
  rotator status --config /etc/rotator/config.yaml -o json | jq .targets`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageErr(fmt.Errorf("--output must be table or json, got %q", output))
			}
			_, _, deps, err := a.prepare(cmd.Flags())
			if err != nil {
				return err
			}
			st, err := deps.runner.Status(cmd.Context())
			if err != nil {
				return failedErr(fmt.Errorf("status: %w", err))
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return failedErr(err)
				}
			} else {
				printStatus(a.stdout, st)
			}
			if !st.InPlace {
				return failedErr(errors.New("not everything is in place"))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	config.RegisterFlags(cmd.Flags())
	return cmd
}

func printStatus(w io.Writer, st rotation.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tSECRET\tPRESENT\tTOKEN\tEXPIRES\tRENEWAL\tSERVICEACCOUNTS\tIN PLACE")
	for _, t := range st.Targets {
		var sas []string
		for _, sa := range t.ServiceAccounts {
			state := "ok"
			switch {
			case !sa.Exists:
				state = "missing"
			case !sa.Patched:
				state = "unpatched"
			}
			sas = append(sas, sa.Name+"="+state)
		}
		token := "-"
		if t.TokenID != 0 {
			token = fmt.Sprint(t.TokenID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Namespace, t.Secret, yesNo(t.SecretPresent), token,
			when(t.ExpiresAt), when(t.RenewalAt), strings.Join(sas, " "), yesNo(t.Synced))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "MANAGED TOKEN\tNAME\tEXPIRES\tRENEWAL\tACTIVE\tCURRENT")
	for _, t := range st.ManagedTokens {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, when(t.ExpiresAt), when(t.RenewalAt), yesNo(t.Active), yesNo(t.Current))
	}
	_ = tw.Flush()
	for _, p := range st.Pending {
		fmt.Fprintln(w, "pending: "+p)
	}
	for _, warn := range st.Warnings {
		fmt.Fprintln(w, "warning: "+warn)
	}
	if st.InPlace {
		fmt.Fprintln(w, "everything is in place")
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
