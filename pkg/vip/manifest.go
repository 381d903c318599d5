package vip

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Defaults of ManifestOptions. The version is pinned so that rendering never
// needs the network; raise it only together with the golden files.
const (
	DefaultKubeVIPImage   = "ghcr.io/kube-vip/kube-vip"
	DefaultKubeVIPVersion = "v1.2.3"

	DefaultLeaseDuration = 15 // seconds, kube-vip's --leaseDuration default
	DefaultRenewDeadline = 10 // seconds, kube-vip's --leaseRenewDuration default
	DefaultRetryPeriod   = 2  // seconds, kube-vip's --leaseRetry default

	// ManifestFile is the name of the file in RKE2's auto-deploy folder.
	ManifestFile = "kube-vip.yaml"
)

// Fixed by the generator for the flags we render (--controlplane --arp
// --leaderElection --inCluster --taint); named here because the preflight and
// the probes rely on the same values.
const (
	kubeVIPNamespace   = "kube-system"
	kubeVIPName        = "kube-vip"
	kubeVIPDaemonSet   = "kube-vip-ds"
	kubeVIPRole        = "system:kube-vip-role"
	kubeVIPRoleBinding = "system:kube-vip-binding"
	kubeVIPLeaseName   = "plndr-cp-lock"
	apiServerPort      = "6443"
	kubeVIPMetricsAddr = ":2112"
)

// ManifestOptions are the inputs of RenderManifests. Zero values take the
// defaults named on each field.
type ManifestOptions struct {
	// Interface is the NIC kube-vip binds the VIP to (vip_interface). Required.
	Interface string
	// VIP is the control-plane virtual IP (address). Required; IPv4 only.
	VIP string
	// Image is the image repository without a tag. Default DefaultKubeVIPImage.
	Image string
	// Version is the image tag and the app.kubernetes.io/version label.
	// Default DefaultKubeVIPVersion.
	Version string
	// LeaseDuration, RenewDeadline and RetryPeriod are kube-vip's leader
	// election timings in seconds (defaults 15, 10, 2). They must satisfy
	// LeaseDuration > RenewDeadline > 1.2 × RetryPeriod, which client-go's
	// leader election (used by kube-vip) checks at start: a manifest that
	// breaks it renders fine and then crash-loops on every server.
	LeaseDuration int
	RenewDeadline int
	RetryPeriod   int
}

// withDefaults returns o with zero fields set to their defaults.
func (o ManifestOptions) withDefaults() ManifestOptions {
	if o.Image == "" {
		o.Image = DefaultKubeVIPImage
	}
	if o.Version == "" {
		o.Version = DefaultKubeVIPVersion
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = DefaultRenewDeadline
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = DefaultRetryPeriod
	}
	return o
}

// Validate reports the first bad field of o (after defaults), naming the
// value and what would be accepted.
func (o ManifestOptions) Validate() error {
	o = o.withDefaults()
	if err := ValidateInterfaceName(o.Interface); err != nil {
		return err
	}
	if _, err := ParseVIP(o.VIP); err != nil {
		return err
	}
	if err := validateImage(o.Image); err != nil {
		return err
	}
	if err := validateLabelValue(o.Version); err != nil {
		return fmt.Errorf("vip: kube-vip version %q: %w", o.Version, err)
	}
	return validateTimings(o.LeaseDuration, o.RenewDeadline, o.RetryPeriod)
}

// ParseVIP parses a VIP as kube-vip's ARP mode accepts it: a plain IPv4
// address that a host can hold. IPv6 VIPs are refused as not supported yet
// (the renderer, preflight and neighbour lookup are IPv4-only).
func ParseVIP(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, fmt.Errorf("vip: vip is empty: an IPv4 address is required, e.g. 192.168.205.200")
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("vip: vip %q is not an IP address: an IPv4 address is required, e.g. 192.168.205.200", s)
	}
	switch {
	case addr.Is4In6():
		return netip.Addr{}, fmt.Errorf("vip: vip %q is an IPv4-mapped IPv6 address: write it as %s", s, addr.Unmap())
	case addr.Is6():
		return netip.Addr{}, fmt.Errorf("vip: vip %q is IPv6: IPv6 VIPs are not supported yet, use an IPv4 address", s)
	case addr.IsUnspecified(), addr.IsMulticast(), addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Addr{}, fmt.Errorf("vip: vip %q cannot be held by a host: use a unicast IPv4 address", s)
	}
	return addr, nil
}

// ValidateInterfaceName checks name the way the Linux kernel does
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or white space.
func ValidateInterfaceName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("vip: interface is empty: name the NIC that carries the VIP, e.g. ens3")
	case len(name) > 15:
		return fmt.Errorf("vip: interface %q is longer than 15 bytes, which Linux does not allow", name)
	case name == "." || name == "..":
		return fmt.Errorf("vip: interface %q is not a valid interface name", name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r <= ' ' || r >= 0x7f {
			return fmt.Errorf("vip: interface %q contains %q: interface names are printable ASCII without '/', ':' or spaces", name, r)
		}
	}
	return nil
}

func validateImage(image string) error {
	if strings.ContainsAny(image, " \t\r\n@") {
		return fmt.Errorf("vip: kube-vip image %q: must be a repository without spaces or digest, e.g. %s", image, DefaultKubeVIPImage)
	}
	last := image[strings.LastIndex(image, "/")+1:]
	if last == "" || strings.Contains(last, ":") {
		return fmt.Errorf("vip: kube-vip image %q: give the repository without a tag (the tag comes from the kube-vip version), e.g. %s", image, DefaultKubeVIPImage)
	}
	return nil
}

// validateLabelValue checks a Kubernetes label value, because the version
// also becomes the app.kubernetes.io/version label.
func validateLabelValue(v string) error {
	if len(v) > 63 {
		return fmt.Errorf("longer than 63 characters")
	}
	for i, r := range v {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (r != '-' && r != '_' && r != '.' || i == 0 || i == len(v)-1) {
			return fmt.Errorf("must be a valid label value (letters, digits, '-', '_', '.', starting and ending alphanumeric), e.g. %s", DefaultKubeVIPVersion)
		}
	}
	return nil
}

func validateTimings(lease, renew, retry int) error {
	for _, t := range []struct {
		key string
		v   int
	}{{"kube-vip-lease-duration", lease}, {"kube-vip-renew-deadline", renew}, {"kube-vip-retry-period", retry}} {
		if t.v <= 0 {
			return fmt.Errorf("vip: %s %d: must be a positive number of seconds", t.key, t.v)
		}
	}
	if lease <= renew {
		return fmt.Errorf("vip: kube-vip-lease-duration %d must be greater than kube-vip-renew-deadline %d", lease, renew)
	}
	// client-go refuses renewDeadline <= JitterFactor(1.2) × retryPeriod;
	// in integers: 5·renew > 6·retry.
	if 5*renew <= 6*retry {
		return fmt.Errorf("vip: kube-vip-renew-deadline %d must be greater than 1.2 × kube-vip-retry-period %d", renew, retry)
	}
	return nil
}

// The object types below hold exactly the fields kube-vip's generator prints
// for our flags, in the order it prints them (alphabetical, as its JSON-based
// marshaller sorts keys), so the rendered YAML reads like the generator's.

type objectMeta struct {
	Labels    map[string]string `yaml:"labels,omitempty"`
	Name      string            `yaml:"name,omitempty"`
	Namespace string            `yaml:"namespace,omitempty"`
}

type serviceAccount struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type policyRule struct {
	APIGroups []string `yaml:"apiGroups"`
	Resources []string `yaml:"resources"`
	Verbs     []string `yaml:"verbs"`
}

type clusterRole struct {
	APIVersion string       `yaml:"apiVersion"`
	Kind       string       `yaml:"kind"`
	Metadata   objectMeta   `yaml:"metadata"`
	Rules      []policyRule `yaml:"rules"`
}

type roleRef struct {
	APIGroup string `yaml:"apiGroup"`
	Kind     string `yaml:"kind"`
	Name     string `yaml:"name"`
}

type subject struct {
	Kind      string `yaml:"kind"`
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace"`
}

type clusterRoleBinding struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	RoleRef    roleRef    `yaml:"roleRef"`
	Subjects   []subject  `yaml:"subjects"`
}

type fieldRef struct {
	FieldPath string `yaml:"fieldPath"`
}

type envSource struct {
	FieldRef fieldRef `yaml:"fieldRef"`
}

type envVar struct {
	Name      string     `yaml:"name"`
	Value     string     `yaml:"value,omitempty"`
	ValueFrom *envSource `yaml:"valueFrom,omitempty"`
}

type capabilities struct {
	Add  []string `yaml:"add"`
	Drop []string `yaml:"drop"`
}

type securityContext struct {
	Capabilities capabilities `yaml:"capabilities"`
}

type container struct {
	Args            []string        `yaml:"args"`
	Env             []envVar        `yaml:"env"`
	Image           string          `yaml:"image"`
	ImagePullPolicy string          `yaml:"imagePullPolicy"`
	Name            string          `yaml:"name"`
	Resources       struct{}        `yaml:"resources"`
	SecurityContext securityContext `yaml:"securityContext"`
}

type matchExpression struct {
	Key      string `yaml:"key"`
	Operator string `yaml:"operator"`
}

type nodeSelectorTerm struct {
	MatchExpressions []matchExpression `yaml:"matchExpressions"`
}

type affinity struct {
	NodeAffinity struct {
		Required struct {
			NodeSelectorTerms []nodeSelectorTerm `yaml:"nodeSelectorTerms"`
		} `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
	} `yaml:"nodeAffinity"`
}

type toleration struct {
	Effect   string `yaml:"effect"`
	Operator string `yaml:"operator"`
}

type podSpec struct {
	Affinity           affinity     `yaml:"affinity"`
	Containers         []container  `yaml:"containers"`
	HostNetwork        bool         `yaml:"hostNetwork"`
	ServiceAccountName string       `yaml:"serviceAccountName"`
	Tolerations        []toleration `yaml:"tolerations"`
}

type daemonSet struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
		UpdateStrategy struct{} `yaml:"updateStrategy"`
	} `yaml:"spec"`
}

// RenderManifests returns kube-vip's ServiceAccount, ClusterRole,
// ClusterRoleBinding and DaemonSet as one multi-document YAML stream. The
// objects are, field for field, what kube-vip's own generator (at the pinned
// version) prints for `manifest rbac` and `manifest daemonset --interface IF
// --address VIP --inCluster --taint --controlplane --arp --leaderElection
// --leaseDuration D --leaseRenewDuration R --leaseRetry P`, except that Image
// may point at a mirror.
func RenderManifests(opts ManifestOptions) ([]byte, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	vip, _ := ParseVIP(opts.VIP)

	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# kube-vip %s: RBAC and DaemonSet (ARP, control plane, leader election) for VIP %s on %s.\n",
		opts.Version, vip, opts.Interface)
	fmt.Fprintf(&buf, "# Rendered by rke2-hanode; the same file on every server.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for _, obj := range []any{renderServiceAccount(), renderClusterRole(), renderClusterRoleBinding(), renderDaemonSet(opts, vip)} {
		if err := enc.Encode(obj); err != nil {
			return nil, fmt.Errorf("vip: render kube-vip manifests: %w", err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("vip: render kube-vip manifests: %w", err)
	}
	return buf.Bytes(), nil
}

func renderServiceAccount() serviceAccount {
	return serviceAccount{
		APIVersion: "v1",
		Kind:       "ServiceAccount",
		Metadata:   objectMeta{Name: kubeVIPName, Namespace: kubeVIPNamespace},
	}
}

func renderClusterRole() clusterRole {
	rule := func(group string, resources []string, verbs ...string) policyRule {
		return policyRule{APIGroups: []string{group}, Resources: resources, Verbs: verbs}
	}
	return clusterRole{
		APIVersion: "rbac.authorization.k8s.io/v1",
		Kind:       "ClusterRole",
		Metadata:   objectMeta{Name: kubeVIPRole},
		Rules: []policyRule{
			rule("", []string{"services/status"}, "update"),
			rule("", []string{"services", "endpoints"}, "list", "get", "watch", "update"),
			rule("", []string{"nodes"}, "list", "get", "watch", "update", "patch"),
			rule("coordination.k8s.io", []string{"leases"}, "list", "get", "watch", "update", "create"),
			rule("discovery.k8s.io", []string{"endpointslices"}, "list", "get", "watch", "update"),
			rule("", []string{"pods"}, "list"),
		},
	}
}

func renderClusterRoleBinding() clusterRoleBinding {
	return clusterRoleBinding{
		APIVersion: "rbac.authorization.k8s.io/v1",
		Kind:       "ClusterRoleBinding",
		Metadata:   objectMeta{Name: kubeVIPRoleBinding},
		RoleRef:    roleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: kubeVIPRole},
		Subjects:   []subject{{Kind: "ServiceAccount", Name: kubeVIPName, Namespace: kubeVIPNamespace}},
	}
}

func renderDaemonSet(opts ManifestOptions, vip netip.Addr) daemonSet {
	labels := func() map[string]string {
		return map[string]string{
			"app.kubernetes.io/name":    kubeVIPDaemonSet,
			"app.kubernetes.io/version": opts.Version,
		}
	}
	value := func(name, v string) envVar { return envVar{Name: name, Value: v} }

	var ds daemonSet
	ds.APIVersion = "apps/v1"
	ds.Kind = "DaemonSet"
	ds.Metadata = objectMeta{Labels: labels(), Name: kubeVIPDaemonSet, Namespace: kubeVIPNamespace}
	ds.Spec.Selector.MatchLabels = map[string]string{"app.kubernetes.io/name": kubeVIPDaemonSet}
	ds.Spec.Template.Metadata = objectMeta{Labels: labels()}

	spec := &ds.Spec.Template.Spec
	spec.Affinity.NodeAffinity.Required.NodeSelectorTerms = []nodeSelectorTerm{
		{MatchExpressions: []matchExpression{{Key: "node-role.kubernetes.io/master", Operator: "Exists"}}},
		{MatchExpressions: []matchExpression{{Key: "node-role.kubernetes.io/control-plane", Operator: "Exists"}}},
	}
	// The generator's order; kube-vip reads them as environment variables,
	// so only the set matters to it, but the order keeps diffs readable.
	env := []envVar{
		value("vip_arp", "true"),
		value("port", apiServerPort),
		{Name: "vip_nodename", ValueFrom: &envSource{FieldRef: fieldRef{FieldPath: "spec.nodeName"}}},
		value("vip_interface", opts.Interface),
		value("vip_subnet", "32"), // ParseVIP admits IPv4 only
		value("dns_mode", "first"),
		value("dhcp_mode", "ipv4"),
		value("cp_enable", "true"),
		value("cp_namespace", kubeVIPNamespace),
		value("vip_leaderelection", "true"),
		value("vip_leasename", kubeVIPLeaseName),
		value("vip_leaseduration", strconv.Itoa(opts.LeaseDuration)),
		value("vip_renewdeadline", strconv.Itoa(opts.RenewDeadline)),
		value("vip_retryperiod", strconv.Itoa(opts.RetryPeriod)),
		value("address", vip.String()),
		value("prometheus_server", kubeVIPMetricsAddr),
	}
	spec.Containers = []container{{
		Args:            []string{"manager"},
		Env:             env,
		Image:           opts.Image + ":" + opts.Version,
		ImagePullPolicy: "IfNotPresent",
		Name:            kubeVIPName,
		SecurityContext: securityContext{Capabilities: capabilities{
			Add:  []string{"NET_ADMIN", "NET_RAW"},
			Drop: []string{"ALL"},
		}},
	}}
	spec.HostNetwork = true
	spec.ServiceAccountName = kubeVIPName
	spec.Tolerations = []toleration{
		{Effect: "NoSchedule", Operator: "Exists"},
		{Effect: "NoExecute", Operator: "Exists"},
	}
	return ds
}

// WriteManifest writes data as kube-vip.yaml into manifestsDir (RKE2's
// auto-deploy folder, <rke2-data-dir>/server/manifests), creating the folder
// with mode 0700 if needed. The file is written to a temporary name, synced
// and renamed, so RKE2's watcher never applies a half-written manifest.
func WriteManifest(manifestsDir string, data []byte) error {
	if manifestsDir == "" {
		return fmt.Errorf("vip: write kube-vip manifest: manifests folder is empty")
	}
	if err := os.MkdirAll(manifestsDir, 0o700); err != nil {
		return fmt.Errorf("vip: write kube-vip manifest: %w", err)
	}
	tmp, err := os.CreateTemp(manifestsDir, "."+ManifestFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("vip: write kube-vip manifest: %w", err)
	}
	tmpName := tmp.Name()
	committed := false
	defer func() {
		if !committed {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	// CreateTemp already uses 0600; Chmod states it against any umask games.
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("vip: write kube-vip manifest: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("vip: write kube-vip manifest %s: %w", tmpName, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("vip: write kube-vip manifest %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("vip: write kube-vip manifest %s: %w", tmpName, err)
	}
	target := filepath.Join(manifestsDir, ManifestFile)
	if err := os.Rename(tmpName, target); err != nil {
		return fmt.Errorf("vip: write kube-vip manifest %s: %w", target, err)
	}
	committed = true
	if dir, err := os.Open(manifestsDir); err == nil {
		// Make the rename durable; a failure here loses nothing that a
		// rewrite at the next start would not restore.
		_ = dir.Sync()
		_ = dir.Close()
	}
	return nil
}
