package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/edgefault/edgefault/shaper"
	"github.com/spf13/cobra"
)

func newDoctorCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Report what this kernel offers for shaping and which backend runs",
		Long: `doctor probes the kernel in a throwaway network namespace (nothing else is
touched) and reports each feature the shaper uses, the backend 'auto' picks,
and what each backend can and cannot do accurately here.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			caps, err := shaper.Probe()
			if err != nil {
				return err
			}
			rep := shaper.Diagnose(caps)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "kernel %s, running as root: %v\n\n", caps.Kernel, caps.Root)
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FEATURE\tPRESENT\tNOTE")
			var names []string
			for f := range caps.Features {
				names = append(names, f)
			}
			sort.Strings(names)
			for _, f := range names {
				note := caps.Errors[f]
				fmt.Fprintf(tw, "%s\t%v\t%s\n", f, caps.Features[f], note)
			}
			tw.Flush()
			fmt.Fprintf(out, "\nbackend (auto): %s\n", rep.Backend)
			for _, b := range rep.Backends {
				status := "usable"
				if b.Error != "" {
					status = "unavailable: " + b.Error
				}
				fmt.Fprintf(out, "\n%s backend: %s\n", b.Name, status)
				for _, n := range b.Notes {
					fmt.Fprintf(out, "  - %s\n", n)
				}
			}
			if rep.Backend == "" {
				return fmt.Errorf("no shaping backend can run on this kernel")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
