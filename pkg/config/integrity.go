package config

import (
	"fmt"
	"os"
	"syscall"
)

// geteuid is the daemon's effective uid (a variable for tests).
var geteuid = os.Geteuid

// checkIntegrity refuses a config file (or a file a key names) that
// someone other than root or the daemon's own user could have written: the
// configuration decides what runs as root (install-script-url, rke2-bin),
// so a writable file is as good as root for whoever can write it. key is ""
// for config files and drop-ins.
func checkIntegrity(path, key string, src Source, probs *problems) bool {
	st, err := os.Stat(path)
	if err != nil {
		return true // reported by whoever reads it
	}
	ok := true
	if sys, isUnix := st.Sys().(*syscall.Stat_t); isUnix {
		if uid := int(sys.Uid); uid != 0 && uid != geteuid() {
			probs.add(key, path, src, fmt.Sprintf("%s is owned by uid %d, not by root or this daemon's user: whoever owns it controls what rke2-hanode runs as root; run chown root:root %s", path, uid, path))
			ok = false
		}
	}
	if mode := st.Mode().Perm(); mode&0o022 != 0 {
		probs.add(key, path, src, fmt.Sprintf("%s has mode %#o, writable by group or others: whoever can write it controls what rke2-hanode runs as root; run chmod go-w %s", path, mode, path))
		ok = false
	}
	return ok
}

// checkDropInDir refuses a drop-in folder others may add files to.
func checkDropInDir(dir string, probs *problems) {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return
	}
	checkIntegrity(dir, "", Source{Kind: SourceFile, Name: dir}, probs)
}

// checkConfigDir refuses a folder holding the config file in which others
// could replace it: writable by group or others without the sticky bit
// (with it, as in /tmp, only the owner may rename or remove the file).
func checkConfigDir(dir string, probs *problems) {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return
	}
	if mode := st.Mode(); mode.Perm()&0o022 != 0 && mode&os.ModeSticky == 0 {
		probs.add("", "", Source{Kind: SourceFile, Name: dir}, fmt.Sprintf("the folder of the config file has mode %#o, writable by group or others: whoever can write it can replace the config; run chmod go-w %s", mode.Perm(), dir))
	}
}
