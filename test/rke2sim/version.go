package rke2sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// versionCommit stands in for the commit RKE2 prints after its version: a
// fixed function of the version, so two builds of one version agree.
func versionCommit(version string) string {
	sum := sha256.Sum256([]byte(version))
	return hex.EncodeToString(sum[:])[:8]
}

// minorOf parses v1.MINOR.PATCH+rke2rN; ok false for anything else.
func minorOf(version string) (major, minor int, ok bool) {
	v, found := strings.CutPrefix(version, "v")
	if !found {
		return 0, 0, false
	}
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	return ma, mi, err1 == nil && err2 == nil
}

// serverVersions are the versions the cluster's servers run, from their
// Nodes (status.nodeInfo.kubeletVersion, kept in etcd).
func (n *node) serverVersions(ctx context.Context) map[string]string {
	nodes, _, err := n.kv().nodes(ctx)
	if err != nil {
		n.log.Warn("cannot read the servers' versions", zap.Error(err))
		return nil
	}
	out := map[string]string{}
	for _, kn := range nodes {
		if kn.Metadata.Labels[labelEtcd] == "true" && kn.Status.NodeInfo.KubeletVersion != "" {
			out[kn.Metadata.Name] = kn.Status.NodeInfo.KubeletVersion
		}
	}
	return out
}

// serverSkew lists what a server of version mine, starting on a datastore
// whose other servers run others, violates; RKE2 refuses none of it.
func serverSkew(self, mine string, others map[string]string) []string {
	_, m, ok := minorOf(mine)
	if !ok {
		return nil
	}
	var out []string
	for _, name := range sortedNames(others) {
		if name == self {
			continue
		}
		_, o, ok := minorOf(others[name])
		switch {
		case !ok:
		case m > o+1:
			out = append(out, fmt.Sprintf("server %s %s started on a datastore whose server %s runs %s: more than one minor older", self, mine, name, others[name]))
		case o > m+1:
			out = append(out, fmt.Sprintf("apiservers more than one minor apart: %s runs %s, %s runs %s", self, mine, name, others[name]))
		}
	}
	return out
}

// agentSkew lists the servers an agent of version mine is newer than.
func agentSkew(self, mine string, servers map[string]string) []string {
	_, m, ok := minorOf(mine)
	if !ok {
		return nil
	}
	var out []string
	for _, name := range sortedNames(servers) {
		if _, o, ok := minorOf(servers[name]); ok && m > o {
			out = append(out, fmt.Sprintf("agent %s %s is newer than server %s %s", self, mine, name, servers[name]))
		}
	}
	return out
}

func sortedNames(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// skewRecords turns violations into state.json entries, logging each.
func (n *node) skewRecords(violations []string) []Rejection {
	out := []Rejection{}
	for _, v := range violations {
		n.log.Warn("version skew (RKE2 lets it through)", zap.String("skew", v))
		out = append(out, Rejection{At: stamp(n.now()), Reason: v})
	}
	return out
}

func (n *node) agentSkew(servers map[string]string) []Rejection {
	return n.skewRecords(agentSkew(n.cfg.NodeName, n.set.Version, servers))
}
