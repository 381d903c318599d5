// Command previous builds the daemon of the previous release, the commit
// test/loopback/testdata/previous-release names, for the test bed's
// mixed-daemon-versions scenario, and prints the binary's path. Its
// version is the commit's short hash. It runs from a full clone: the
// commit's tree is exported with git archive (testbin.BuildRelease).
//
//	previous -dir DIR [-release FILE]
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/rke2-hanode/rke2-hanode/test/testbin"
)

func main() {
	dir := flag.String("dir", "", "the folder to build in (required)")
	release := flag.String("release", "test/loopback/testdata/previous-release", "the file naming the previous release's commit")
	flag.Parse()
	if *dir == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: previous -dir DIR [-release FILE]")
		os.Exit(1)
	}
	commit, err := testbin.ReadRelease(*release)
	if err == nil && len(commit) < 7 {
		err = fmt.Errorf("%s: %q is not a commit", *release, commit)
	}
	var bin string
	if err == nil {
		bin, err = testbin.BuildRelease(*dir, commit, commit[:7])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "previous:", err)
		os.Exit(1)
	}
	fmt.Println(bin)
}
