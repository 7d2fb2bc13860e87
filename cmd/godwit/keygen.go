package main

import (
	"fmt"

	"github.com/godwit-ai/godwit/cluster"
	"github.com/spf13/cobra"
)

func keygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new cluster key (base64, 32 bytes) for a fleet's key file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := cluster.Keygen()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), key)
			return nil
		},
	}
}
