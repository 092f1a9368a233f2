package main

import (
	"bufio"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/streamgrid/streamgrid/internal/auth"
)

// runPasswd reads a password from stdin (one line; not from the command
// line, which shells keep in their history) and prints the value for an
// auth.users[].pass key: argon2id by default, sha256 with --sha256.
func runPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sha := fs.Bool("sha256", false, "print a sha256:<base64> hash instead of argon2id (cheaper to check, weaker against guessing)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "streamgrid passwd: %v\n", err)
		return 1
	}
	pass := strings.TrimRight(line, "\r\n")
	if pass == "" {
		fmt.Fprintln(stderr, "streamgrid passwd: empty password (give it on stdin: echo -n 'pw' | streamgrid passwd)")
		return 2
	}
	if *sha {
		fmt.Fprintln(stdout, auth.HashSHA256(pass))
		return 0
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		fmt.Fprintf(stderr, "streamgrid passwd: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, auth.HashArgon2(pass, salt))
	return 0
}
