// Command gen writes boxfleet's Grafana dashboards as JSON files into the
// directory given as its argument (go generate runs it in dashboards/).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/boxfleet/boxfleet/dashboards"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen DIR")
		os.Exit(2)
	}
	for name, d := range dashboards.All() {
		b, err := dashboards.JSON(d)
		if err == nil {
			err = os.WriteFile(filepath.Join(os.Args[1], name), b, 0o644)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "gen: %s: %v\n", name, err)
			os.Exit(1)
		}
	}
}
