package main

import (
	"fmt"
	"io"
)

func runLoadtest(args []string, stderr io.Writer) int {
	fmt.Fprintln(stderr, "streamgrid loadtest: not built yet (see the open issue for the load generator)")
	return 2
}
