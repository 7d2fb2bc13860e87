package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/godwit-ai/godwit/models/gguf"
)

func inspectCmd() *cobra.Command {
	var (
		full      bool
		modelPath string
	)
	cmd := &cobra.Command{
		Use:   "inspect FILE | inspect -m FILE",
		Short: "Print a GGUF file's metadata and tensor table",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 1 && modelPath != "":
				return fmt.Errorf("give the file once: as an argument or with -m")
			case len(args) == 1:
				modelPath = args[0]
			case modelPath == "":
				return fmt.Errorf("inspect needs a GGUF file: godwit inspect FILE (or -m FILE)")
			}
			args = []string{modelPath}
			f, err := gguf.Open(modelPath)
			if err != nil {
				return err
			}
			defer f.Close()
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "file\t%s\nversion\t%d\nalignment\t%d\nmetadata\t%d entries\ntensors\t%d\n\n", args[0], f.Version, f.Alignment, len(f.KV), len(f.Tensors))
			max := 8
			if full {
				max = 1 << 30
			}
			fmt.Fprintln(w, "KEY\tTYPE\tVALUE")
			for _, kv := range f.KV {
				typ := kv.Value.Type.String()
				if kv.Value.Type == gguf.TypeArray {
					typ = fmt.Sprintf("[]%s", kv.Value.Elem)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", kv.Key, typ, oneLine(kv.Value.Format(max), 120, full))
			}
			fmt.Fprintln(w, "\nTENSOR\tTYPE\tSHAPE\tBYTES")
			var total int
			for _, t := range f.Tensors {
				total += len(t.Data)
				fmt.Fprintf(w, "%s\t%s\t%v\t%d\n", t.Name, t.Type, t.Shape, len(t.Data))
			}
			fmt.Fprintf(w, "total\t\t\t%d\n", total)
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&full, "full", false, "print long arrays and strings whole")
	cmd.Flags().StringVarP(&modelPath, "model", "m", "", "the GGUF file (as the other commands take it)")
	return cmd
}

// oneLine flattens s and, unless full, cuts it at max runes.
func oneLine(s string, max int, full bool) string {
	s = strings.ReplaceAll(s, "\n", `\n`)
	if r := []rune(s); !full && len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}
