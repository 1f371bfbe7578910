// Command kube-test-server runs a real Kubernetes control plane for vmdhcp's end-to-end tests:
// kube-apiserver as Kubernetes' own integration tests start it (StartTestServer), an embedded
// etcd, and the kube-controller-manager controllers that a cluster without nodes still relies on
// (namespace deletion, garbage collection, the default ServiceAccount of each namespace, the
// kube-root-ca.crt ConfigMap, aggregated ClusterRoles), all in this one process.
//
// It writes an admin kubeconfig (a client certificate in system:masters), prints one line
//
//	kube-test-server ready: server=https://127.0.0.1:PORT kubeconfig=PATH
//
// on standard output once everything answers, and stops cleanly on SIGTERM or SIGINT. Started
// again with the same --dir it serves the same etcd data on the same address with the same
// certificates, so clients see a restart, not a new cluster.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
)

// state is what a restart with the same --dir reuses, so that the address, the etcd member and
// every certificate stay the same.
type state struct {
	Port           int `json:"port"`
	EtcdClientPort int `json:"etcdClientPort"`
	EtcdPeerPort   int `json:"etcdPeerPort"`
}

type config struct {
	dir         string
	port        int
	noFsync     bool
	extraFlags  []string
	readyPrefix string
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-test-server: %v\n", err)
		os.Exit(2)
	}
	if err := run(opts); err != nil {
		fmt.Fprintf(os.Stderr, "kube-test-server: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	// Importing the test server registers klog's flags on flag.CommandLine: keep ours apart.
	fs := flag.NewFlagSet("kube-test-server", flag.ContinueOnError)
	var opts config
	var extra string
	fs.StringVar(&opts.dir, "dir", "", "state directory: etcd data, certificates, admin.kubeconfig, logs (required; reused on restart)")
	fs.IntVar(&opts.port, "port", 0, "loopback port to serve on (0: the port of a previous start with this --dir, else a free one)")
	fs.BoolVar(&opts.noFsync, "etcd-unsafe-no-fsync", false, "let etcd skip fsync (faster, loses data on a machine crash)")
	fs.StringVar(&extra, "apiserver-flags", "", "extra kube-apiserver flags, space-separated (e.g. --etcd-compaction-interval=10s)")
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if opts.dir == "" {
		return opts, errors.New("--dir is required")
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	opts.extraFlags = strings.Fields(extra)
	opts.readyPrefix = "kube-test-server ready:"
	return opts, nil
}

func run(opts config) error {
	if err := os.MkdirAll(opts.dir, 0o700); err != nil {
		return fmt.Errorf("create --dir %s: %w", opts.dir, err)
	}
	dir, err := filepath.Abs(opts.dir)
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logFile.Close()
	klog.LogToStderr(false)
	klog.SetOutput(logFile)

	st, err := loadState(dir, opts.port)
	if err != nil {
		return err
	}
	pki, err := ensurePKI(filepath.Join(dir, "pki"))
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	etcd, err := startEtcd(dir, st, opts.noFsync)
	if err != nil {
		return err
	}
	defer etcd.Close()

	tb := newServerTB(logFile)
	defer tb.runCleanups()

	storage := storagebackend.NewDefaultConfig("/registry", nil)
	storage.Transport.ServerList = []string{fmt.Sprintf("http://127.0.0.1:%d", st.EtcdClientPort)}
	instance := apiserver.NewDefaultTestServerOptions()
	// The metrics invariants are a Kubernetes CI concern; a failed scrape at shutdown is noise here.
	instance.DisableInvariantChecks = true
	flags := append([]string{
		"--authorization-mode=Node,RBAC",
		"--client-ca-file=" + pki.caCert,
		// The serving pair is kept in --cert-dir under the names the server looks for, so it
		// takes them instead of making a new self-signed pair on every start.
		"--cert-dir=" + pki.servingDir,
	}, opts.extraFlags...)
	server, err := apiserver.StartTestServer(tb, instance, flags, storage)
	if err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	// The test server picks its own port; a forwarder on the stable port hides that, so a client
	// (and its kubeconfig) survives a restart of this program.
	internal := server.ClientConfig.Host
	internal = strings.TrimPrefix(internal, "https://")
	fwd, err := startForwarder(st.Port, internal)
	if err != nil {
		server.TearDownFn()
		return err
	}
	serverURL := fmt.Sprintf("https://127.0.0.1:%d", st.Port)
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(kubeconfig, serverURL, pki); err != nil {
		fwd.close()
		server.TearDownFn()
		return err
	}

	kcmCtx, kcmCancel := context.WithCancel(klog.NewContext(ctx, klog.Background()))
	kcmDone, err := startControllerManager(kcmCtx, kubeconfig, pki.caCert)
	if err != nil {
		kcmCancel()
		fwd.close()
		server.TearDownFn()
		return err
	}
	if err := waitForControllers(ctx, kubeconfig, kcmDone); err != nil {
		kcmCancel()
		fwd.close()
		server.TearDownFn()
		return err
	}

	fmt.Printf("%s server=%s kubeconfig=%s\n", opts.readyPrefix, serverURL, kubeconfig)
	_ = os.Stdout.Sync()

	select {
	case <-ctx.Done():
	case err := <-kcmDone:
		klog.ErrorS(err, "kube-controller-manager stopped")
	}
	kcmCancel()
	select {
	case <-kcmDone:
	case <-time.After(10 * time.Second):
		klog.Info("kube-controller-manager did not stop within 10s")
	}
	fwd.close()
	server.TearDownFn()
	fmt.Fprintln(os.Stderr, "kube-test-server: stopped")
	return nil
}

func loadState(dir string, port int) (state, error) {
	path := filepath.Join(dir, "state.json")
	var st state
	if raw, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(raw, &st); err != nil {
			return st, fmt.Errorf("read %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return st, err
	}
	if port != 0 {
		st.Port = port
	}
	for _, p := range []*int{&st.Port, &st.EtcdClientPort, &st.EtcdPeerPort} {
		if *p == 0 {
			free, err := freePort()
			if err != nil {
				return st, err
			}
			*p = free
		}
	}
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return st, err
	}
	return st, os.WriteFile(path, raw, 0o600)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEtcd(dir string, st state, noFsync bool) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "kube-test-server"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	cfg.UnsafeNoFsync = noFsync
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", st.EtcdClientPort)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", st.EtcdPeerPort)}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd in %s: %w", cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("etcd was not ready within 60s")
	}
}

// forwarder copies TCP connections from the stable port to the API server's own port.
type forwarder struct {
	listener net.Listener
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

func startForwarder(port int, target string) (*forwarder, error) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1:%d: %w", port, err)
	}
	f := &forwarder{listener: l, conns: map[net.Conn]struct{}{}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.pipe(c, target)
		}
	}()
	return f, nil
}

func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

func (f *forwarder) pipe(client net.Conn, target string) {
	if !f.track(client) {
		return
	}
	defer f.untrack(client)
	upstream, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	if !f.track(upstream) {
		return
	}
	defer f.untrack(upstream)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(upstream, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, upstream); done <- struct{}{} }()
	<-done
}

// close stops accepting and cuts every open connection, as a stopped API server would.
func (f *forwarder) close() {
	f.listener.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
}

// waitForControllers returns once the serviceaccount controller has created the default
// ServiceAccount of the default namespace: from then on Pods pass ServiceAccount admission.
func waitForControllers(ctx context.Context, kubeconfig string, kcmDone <-chan error) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-kcmDone:
			return false, fmt.Errorf("kube-controller-manager stopped: %v", err)
		default:
		}
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

type pkiFiles struct {
	caCert, caKey, servingDir, servingCert, servingKey, adminCert, adminKey string
}

// ensurePKI creates, once, a CA that signs both the serving certificate (127.0.0.1, localhost)
// and the admin client certificate (O=system:masters); later starts reuse the files.
func ensurePKI(dir string) (pkiFiles, error) {
	p := pkiFiles{
		caCert: filepath.Join(dir, "ca.crt"), caKey: filepath.Join(dir, "ca.key"),
		servingDir:  filepath.Join(dir, "serving"),
		servingCert: filepath.Join(dir, "serving", "apiserver.crt"), servingKey: filepath.Join(dir, "serving", "apiserver.key"),
		adminCert: filepath.Join(dir, "admin.crt"), adminKey: filepath.Join(dir, "admin.key"),
	}
	if _, err := os.Stat(p.adminKey); err == nil {
		return p, nil
	}
	if err := os.MkdirAll(p.servingDir, 0o700); err != nil {
		return p, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	now := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vmdhcp-e2e-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return p, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return p, err
	}
	if err := writePair(p.caCert, p.caKey, caDER, caKey); err != nil {
		return p, err
	}
	leaf := func(serial int64, subject pkix.Name, usage x509.ExtKeyUsage, ips []net.IP, dns []string, certPath, keyPath string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      subject,
			NotBefore:    now,
			NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
			DNSNames:     dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		return writePair(certPath, keyPath, der, key)
	}
	if err := leaf(2, pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth,
		[]net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost", "kubernetes.default.svc"}, p.servingCert, p.servingKey); err != nil {
		return p, err
	}
	if err := leaf(3, pkix.Name{CommonName: "vmdhcp-e2e-admin", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth,
		nil, nil, p.adminCert, p.adminKey); err != nil {
		return p, err
	}
	return p, nil
}

func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}

func writeKubeconfig(path, server string, p pkiFiles) error {
	read := func(f string) (string, error) {
		raw, err := os.ReadFile(f)
		return string(raw), err
	}
	ca, err := read(p.caCert)
	if err != nil {
		return err
	}
	cert, err := read(p.adminCert)
	if err != nil {
		return err
	}
	key, err := read(p.adminKey)
	if err != nil {
		return err
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	body := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kube-test-server
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: admin@kube-test-server
  context:
    cluster: kube-test-server
    user: admin
current-context: admin@kube-test-server
`, server, b64(ca), b64(cert), b64(key))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
