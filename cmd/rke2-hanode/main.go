// Command rke2-hanode forms a highly available RKE2 cluster host by host.
package main

import (
	"os"

	"github.com/rke2-hanode/rke2-hanode/pkg/cli"
)

func main() {
	os.Exit(cli.Execute(os.Args[1:], os.Stdout, os.Stderr))
}
