// Command stamp prints version.String(): TestStamped builds it with -ldflags -X.
package main

import (
	"fmt"

	"github.com/streamgrid/streamgrid/internal/version"
)

func main() { fmt.Print(version.String()) }
