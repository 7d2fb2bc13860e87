package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func tokenizeCmd() *cobra.Command {
	var (
		modelPath    string
		noBOS        bool
		pieces       bool
		parseSpecial bool
	)
	cmd := &cobra.Command{
		Use:   "tokenize [-m FILE] TEXT",
		Short: "Print the token ids of a text",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, done, err := loadTokenizer(modelPath, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer done()
			ids := tok.Encode(args[0], !noBOS, parseSpecial)
			out := cmd.OutOrStdout()
			if !pieces {
				s := make([]string, len(ids))
				for i, id := range ids {
					s[i] = strconv.Itoa(int(id))
				}
				_, err := fmt.Fprintln(out, strings.Join(s, " "))
				return err
			}
			for _, id := range ids {
				fmt.Fprintf(out, "%d\t%q\n", id, tok.Piece(id))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&modelPath, "model", "m", "", "GGUF model file whose tokenizer to use")
	f.BoolVar(&noBOS, "no-bos", false, "do not add the BOS/EOS tokens the model asks for")
	f.BoolVar(&pieces, "pieces", false, "print each token's id and text, one per line")
	f.BoolVar(&parseSpecial, "special", false, "recognise special tokens such as <|im_start|> in the text")
	return cmd
}

func detokenizeCmd() *cobra.Command {
	var modelPath string
	cmd := &cobra.Command{
		Use:   "detokenize [-m FILE] ID...",
		Short: "Print the text of token ids",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, done, err := loadTokenizer(modelPath, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer done()
			var ids []int32
			for _, a := range args {
				for _, field := range strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ' ' }) {
					id, err := strconv.ParseInt(field, 10, 32)
					if err != nil || id < 0 || int(id) >= tok.VocabSize() {
						return fmt.Errorf("%q is not a token id (0..%d)", field, tok.VocabSize()-1)
					}
					ids = append(ids, int32(id))
				}
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok.Decode(ids))
			return err
		},
	}
	cmd.Flags().StringVarP(&modelPath, "model", "m", "", "GGUF model file whose tokenizer to use")
	return cmd
}
