package rke2sim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func golden(t testing.TB, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func validateText(t testing.TB, files map[string]string) (vipSpec, bool, []string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	store, err := loadAppliedStore(filepath.Join(t.TempDir(), "applied.json"))
	if err != nil {
		t.Fatal(err)
	}
	parseProblems, err := store.applyDir(dir, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	docs := store.docs()
	check := kubeVIPCheck{version: "v1.2.3", image: "ghcr.io/kube-vip/kube-vip", ifaceExists: func(n string) bool { return n == "ens3" || n == "lo" || n == "eth0" }}
	spec, found, problems := check.validate(docs)
	return spec, found, append(parseProblems, problems...)
}

func TestKubeVIPGoldenIsValid(t *testing.T) {
	spec, found, problems := validateText(t, map[string]string{
		"kube-vip-rbac.yaml": golden(t, "kube-vip-v1.2.3-rbac.yaml"),
		"kube-vip.yaml":      golden(t, "kube-vip-v1.2.3-daemonset-seed.yaml"),
	})
	if !found || len(problems) != 0 {
		t.Fatalf("found=%v problems:\n%s", found, strings.Join(problems, "\n"))
	}
	if spec.Interface != "ens3" || spec.Address.String() != "192.168.205.200" || spec.LeaseDuration != 15*time.Second ||
		spec.RenewDeadline != 10*time.Second || spec.RetryPeriod != 2*time.Second {
		t.Fatalf("spec %+v", spec)
	}
	// One file holding everything is as good as two.
	if _, _, problems := validateText(t, map[string]string{"all.yaml": golden(t, "kube-vip-v1.2.3-rbac.yaml") + "\n---\n" + golden(t, "kube-vip-v1.2.3-daemonset-seed.yaml")}); len(problems) != 0 {
		t.Fatalf("single file: %v", problems)
	}
}

func TestKubeVIPManifestProblemsNameTheField(t *testing.T) {
	ds := golden(t, "kube-vip-v1.2.3-daemonset-seed.yaml")
	rbac := golden(t, "kube-vip-v1.2.3-rbac.yaml")
	replace := func(s, old, new string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("golden lacks %q", old)
		}
		return strings.Replace(s, old, new, 1)
	}
	cases := []struct {
		name     string
		ds, rbac string
		want     string
	}{
		{"subnet", replace(ds, "value: \"32\"", "value: \"24\""), rbac, `env vip_subnet = "24", want "32"`},
		{"port as a number", replace(ds, "value: \"6443\"", "value: 6443"), rbac, "env port = 6443 (not a string)"},
		{"env missing", replace(ds, "        - name: dns_mode\n          value: first\n", ""), rbac, "env dns_mode missing"},
		{"stale vip_cidr", replace(ds, "name: vip_subnet", "name: vip_cidr"), rbac, "env vip_cidr unexpected"},
		{"env order", replace(replace(ds, "name: vip_arp\n          value: \"true\"", "name: port\n          value: \"XX\""), "name: port\n          value: \"6443\"", "name: vip_arp\n          value: \"true\""), rbac, "env order"},
		{"lease below renew", replace(ds, "value: \"15\"", "value: \"10\""), rbac, "vip_leaseduration (10s) must be greater than vip_renewdeadline (10s)"},
		{"bad address", replace(ds, "value: 192.168.205.200", "value: 192.168.205"), rbac, `env address = "192.168.205", want an IP address`},
		{"unknown interface", replace(ds, "value: ens3", "value: nosuch0"), rbac, `env vip_interface = "nosuch0": no such interface`},
		{"nodename literal", replace(ds, "valueFrom:\n            fieldRef:\n              fieldPath: spec.nodeName", "value: node1"), rbac, "env vip_nodename"},
		{"hostNetwork", replace(ds, "hostNetwork: true", "hostNetwork: false"), rbac, "spec.template.spec.hostNetwork = false, want true"},
		{"no service account", replace(ds, "      serviceAccountName: kube-vip\n", ""), rbac, "spec.template.spec.serviceAccountName missing"},
		{"image tag", replace(ds, "kube-vip:v1.2.3", "kube-vip:v0.8.0"), rbac, `image = "ghcr.io/kube-vip/kube-vip:v0.8.0", want "ghcr.io/kube-vip/kube-vip:v1.2.3"`},
		{"version label", replace(ds, "app.kubernetes.io/version: v1.2.3", "app.kubernetes.io/version: v1.2.2"), rbac, "metadata.labels[app.kubernetes.io/version]"},
		{"SYS_TIME", replace(ds, "- NET_RAW", "- NET_RAW\n            - SYS_TIME"), rbac, "capabilities.add has 3 items, want 2"},
		{"no drop ALL", replace(ds, "            drop:\n            - ALL\n", ""), rbac, "capabilities.drop missing"},
		{"one toleration", replace(ds, "      - effect: NoExecute\n        operator: Exists\n", ""), rbac, "spec.template.spec.tolerations has 1 items, want 2"},
		{"affinity", replace(ds, "node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/controlplane"), rbac, "nodeSelectorTerms[1].matchExpressions[0].key"},
		{"name", replace(ds, "  name: kube-vip-ds\n  namespace", "  name: kube-vip\n  namespace"), rbac, `metadata.name = "kube-vip", want "kube-vip-ds"`},
		{"namespace", replace(ds, "  namespace: kube-system\nspec", "  namespace: default\nspec"), rbac, `metadata.namespace = "default"`},
		{"pull policy", replace(ds, "imagePullPolicy: IfNotPresent", "imagePullPolicy: Always"), rbac, "imagePullPolicy"},
		{"extra field", replace(ds, "      hostNetwork: true\n", "      hostNetwork: true\n      priorityClassName: system-node-critical\n"), rbac, "priorityClassName = \"system-node-critical\" unexpected"},
		{"rbac verb missing", ds, replace(rbac, "  - update\n  - patch\n", "  - update\n"), "ClusterRole system:kube-vip-role: rules[2].verbs has 4 items, want 5"},
		{"rbac missing binding", ds, rbac[:strings.Index(rbac, "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding")], "ClusterRoleBinding system:kube-vip-binding missing"},
		{"rbac static-site variant", ds, replace(rbac, "  - pods\n  verbs:\n  - list\n", "  - pods\n  verbs:\n  - list\n  - get\n"), "rules[5].verbs has 2 items, want 1"},
		{"no rbac", ds, "", "ServiceAccount kube-vip missing"},
		{"two daemonsets", ds + "\n---\n" + replace(ds, "  name: kube-vip-ds\n  namespace", "  name: kube-vip-ds2\n  namespace"), rbac, "2 kube-vip DaemonSets"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"kube-vip.yaml": tc.ds}
			if tc.rbac != "" {
				files["kube-vip-rbac.yaml"] = tc.rbac
			}
			_, found, problems := validateText(t, files)
			if !found {
				t.Fatal("kube-vip DaemonSet not found")
			}
			joined := strings.Join(problems, "\n")
			t.Log(joined)
			if !strings.Contains(joined, tc.want) {
				t.Fatalf("problems do not name %q:\n%s", tc.want, joined)
			}
		})
	}
	// A file that does not decode is skipped whole, its DaemonSet too.
	if _, found, problems := validateText(t, map[string]string{"kube-vip.yaml": ds + "\n---\nfoo: [", "kube-vip-rbac.yaml": rbac}); found ||
		len(problems) != 1 || !strings.HasPrefix(problems[0], "kube-vip.yaml: yaml:") {
		t.Fatalf("broken file: found=%v problems=%v", found, problems)
	}
	if _, found, _ := validateText(t, map[string]string{"other.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"}); found {
		t.Fatal("found kube-vip where there is none")
	}
}

func FuzzKubeVIPValidate(f *testing.F) {
	f.Add(golden(f, "kube-vip-v1.2.3-daemonset-seed.yaml"))
	f.Add(golden(f, "kube-vip-v1.2.3-rbac.yaml"))
	f.Add("kind: DaemonSet\nmetadata: {name: kube-vip-ds}\nspec: {template: {spec: {containers: [{env: [1, {name: x}]}]}}}")
	check := kubeVIPCheck{version: "v1.2.3", image: "ghcr.io/kube-vip/kube-vip", ifaceExists: func(n string) bool { return n == "ens3" }}
	f.Fuzz(func(t *testing.T, body string) {
		docs, err := decodeManifest("m.yaml", []byte(body))
		if err != nil {
			return
		}
		_, _, problems := check.validate(docs)
		for _, p := range problems {
			if p == "" {
				t.Fatal("empty problem")
			}
		}
	})
}
