// Command godwit turns a Linux box into an LLM inference node: it loads GGUF
// models and generates text. Every flag can also be set through a GODWIT_*
// environment variable (--n-predict → GODWIT_N_PREDICT).
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at build time by the Makefile.
var version = "dev"

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "godwit:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "godwit",
		Short:         "Serve and run GGUF language models on CPUs, alone or as a fleet",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return flagsFromEnv(cmd.Flags())
		},
	}
	root.SetVersionTemplate("godwit {{.Version}}\n")
	// Every command's help says so: the subcommands inherit the template.
	root.SetUsageTemplate(root.UsageTemplate() + "\nEvery flag can also be set in the environment as GODWIT_<FLAG>, the flag's name upper-cased with\ndashes as underscores (--n-predict: GODWIT_N_PREDICT); a flag on the command line wins.\n")
	root.AddCommand(runCmd(), serveCmd(loadWithProgress), inspectCmd(), tokenizeCmd(), detokenizeCmd(), genModelCmd(), benchCmd(), keygenCmd(), versionCmd())
	return root
}

// flagsFromEnv sets every flag not given on the command line from
// GODWIT_<NAME>, the flag's name upper-cased with dashes as underscores.
func flagsFromEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil || f.Deprecated != "" {
			return
		}
		key := "GODWIT_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(key); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", key, v, e)
			}
		}
	})
	return err
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print godwit's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "godwit", version)
			fmt.Fprintln(cmd.OutOrStdout(), describeDevice(probeGPU))
		},
	}
}
