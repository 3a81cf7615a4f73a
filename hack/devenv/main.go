// Command devenv runs the demo's local Kubernetes API server and reads back
// what the rotator did. It is a development tool, not part of the product.
//
//	devenv up --dir D                  start etcd + kube-apiserver, create the demo namespaces, wait for SIGTERM
//	devenv show --kubeconfig K ...     print the target Secrets, ServiceAccounts and GitLab tokens
//	devenv writes --audit-log F        count the rotator's write requests to Kubernetes
//	devenv clock --emulator URL [--advance 21d]   read or move the emulator's clock
//	devenv registry --emulator URL --dir D       serve a real registry (distribution) trusting the emulator
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/rotator-dev/rotator/internal/testenv"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: devenv up|show|writes|clock|registry [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "show":
		err = show(os.Args[2:])
	case "writes":
		err = writes(os.Args[2:])
	case "clock":
		err = clock(os.Args[2:])
	case "registry":
		err = registry(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devenv:", err)
		os.Exit(1)
	}
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", "", "state folder: kubeconfig, audit.log, ready")
	nss := fs.String("namespaces", "default,game-servers", "namespaces to create, each with ServiceAccounts default and agones-sdk")
	_ = fs.Parse(args)
	if *dir == "" {
		return fmt.Errorf("--dir is required")
	}
	c, err := testenv.Start(*dir)
	if err != nil {
		return err
	}
	defer func() { _ = c.Stop() }()
	ctx := context.Background()
	for _, ns := range strings.Split(*nss, ",") {
		if _, err := c.Clientset.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			if _, err := c.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		// No controller-manager runs, so nothing creates ServiceAccounts.
		for _, sa := range []string{"default", "agones-sdk"} {
			if _, err := c.Clientset.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(*dir, "ready"), []byte(c.KubeconfigPath+"\n"), 0o600); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil
}

type emuToken struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Username  string     `json:"username"`
	ExpiresAt *time.Time `json:"expires_at"`
	Revoked   bool       `json:"revoked"`
	Token     string     `json:"token"`
}

func show(args []string) error {
	fs := flag.NewFlagSet("show", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig")
	nss := fs.String("namespaces", "default,game-servers", "namespaces")
	host := fs.String("registry-host", "", "registry host of the Secrets' auth entry")
	emulator := fs.String("emulator", "", "emulator base URL")
	_ = fs.Parse(args)

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var tokens []emuToken
	if err := getJSON(*emulator+"/-/emulator/deploy_tokens?scope=project:7&reveal=true", &tokens); err != nil {
		return err
	}
	byUser := map[string]emuToken{}
	fmt.Println("GitLab deploy tokens of project 7:")
	for _, t := range tokens {
		byUser[t.Username] = t
		exp := "never"
		if t.ExpiresAt != nil {
			exp = t.ExpiresAt.UTC().Format(time.RFC3339)
		}
		fmt.Printf("  id=%-3d name=%-26s username=%-24s expires=%s revoked=%v\n", t.ID, t.Name, t.Username, exp, t.Revoked)
	}
	ctx := context.Background()
	for _, ns := range strings.Split(*nss, ",") {
		fmt.Printf("namespace %s:\n", ns)
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, "gitlab", metav1.GetOptions{})
		if err != nil {
			fmt.Printf("  secret gitlab: %v\n", err)
		} else {
			user, pass := decode(s, *host)
			match := "DOES NOT MATCH any GitLab token"
			if t, ok := byUser[user]; ok && t.Token == pass && pass != "" {
				match = fmt.Sprintf("matches GitLab token %d's value", t.ID)
			}
			fmt.Printf("  secret gitlab: type=%s uid=%s token-id=%s\n", s.Type, s.UID, s.Annotations["rotator.dev/token-id"])
			fmt.Printf("    auths[%s] decodes to username=%s, password %s\n", *host, user, match)
		}
		for _, name := range []string{"default", "agones-sdk"} {
			sa, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				fmt.Printf("  serviceaccount %s: %v\n", name, err)
				continue
			}
			var refs []string
			for _, r := range sa.ImagePullSecrets {
				refs = append(refs, r.Name)
			}
			fmt.Printf("  serviceaccount %s: imagePullSecrets=[%s]\n", name, strings.Join(refs, ","))
		}
	}
	return nil
}

func decode(s *corev1.Secret, host string) (string, string) {
	var cfg struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg) != nil {
		return "", ""
	}
	raw, err := base64.StdEncoding.DecodeString(cfg.Auths[host].Auth)
	if err != nil {
		return "", ""
	}
	u, p, _ := strings.Cut(string(raw), ":")
	return u, p
}

func writes(args []string) error {
	fs := flag.NewFlagSet("writes", flag.ExitOnError)
	audit := fs.String("audit-log", "", "kube-apiserver audit log")
	agent := fs.String("agent", "rotator", "user agent to count")
	emulator := fs.String("emulator", "", "count the emulator's API write requests instead")
	_ = fs.Parse(args)
	if *emulator != "" {
		var sum struct {
			Writes int `json:"writes"`
		}
		if err := getJSON(*emulator+"/-/emulator/requests/summary", &sum); err != nil {
			return err
		}
		fmt.Println(sum.Writes)
		return nil
	}
	evs, err := testenv.ReadWrites(*audit, *agent)
	if err != nil {
		return err
	}
	fmt.Println(len(evs))
	return nil
}

func clock(args []string) error {
	fs := flag.NewFlagSet("clock", flag.ExitOnError)
	emulator := fs.String("emulator", "", "emulator base URL")
	advance := fs.String("advance", "", "move the clock forward by this Go duration (d allowed, e.g. 21d)")
	_ = fs.Parse(args)
	if *advance != "" {
		body := strings.NewReader(fmt.Sprintf(`{"advance":%q}`, *advance))
		resp, err := http.Post(*emulator+"/-/emulator/clock", "application/json", body)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("advance clock: %s", resp.Status)
		}
	}
	var now struct {
		Now string `json:"now"`
	}
	if err := getJSON(*emulator+"/-/emulator/clock", &now); err != nil {
		return err
	}
	fmt.Println(now.Now)
	return nil
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func registry(args []string) error {
	fs := flag.NewFlagSet("registry", flag.ExitOnError)
	emulator := fs.String("emulator", "", "emulator base URL, with host localhost")
	dir := fs.String("dir", "", "state folder; the registry host is written to DIR/host once serving")
	_ = fs.Parse(args)
	resp, err := http.Get(*emulator + "/-/emulator/jwks")
	if err != nil {
		return err
	}
	jwks, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("read the emulator's JWKS: %s %v", resp.Status, err)
	}
	reg, err := testenv.StartRegistry(*dir, *emulator+"/jwt/auth", "gitlab-issuer", jwks)
	if err != nil {
		return err
	}
	defer func() { _ = reg.Stop() }()
	if err := os.WriteFile(filepath.Join(*dir, "host"), []byte(reg.Host+"\n"), 0o600); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil
}
