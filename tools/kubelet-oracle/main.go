// Command kubelet-oracle answers "which credentials would the kubelet try for
// this image, given these pod pull secrets?" through the kubelet's own code
// (k8s.io/kubernetes at the version pinned in scripts/build-kubelet-oracle.sh).
//
// It reads a JSON array of cases on stdin and writes a JSON array of answers,
// one per case and in the same order, on stdout. pullwarden's differential test
// (crates/pullwarden-core/tests/kubelet_oracle.rs) compares them with
// pullwarden_core::pull.
//
// The path a case takes mirrors the kubelet:
//   - kubelet_pods.go getPullSecretsForPod: refs with an empty name are
//     ignored, a secret that cannot be found is skipped;
//   - images/image_manager.go makeLookupPullCredentialsFunc:
//     parsers.ParseImageName, then credentialprovidersecrets.MakeDockerKeyring
//     over the pod's secrets (unioned with an empty node keyring), then
//     Lookup of the normalised repository.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	v1 "k8s.io/api/core/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/kubernetes/pkg/credentialprovider"
	credentialprovidersecrets "k8s.io/kubernetes/pkg/credentialprovider/secrets"
	"k8s.io/kubernetes/pkg/util/parsers"
)

type secretIn struct {
	Name string            `json:"name"`
	Type string            `json:"type"`
	Data map[string][]byte `json:"data"`
}

type caseIn struct {
	Image      string     `json:"image"`
	Secrets    []secretIn `json:"secrets"`
	PodSecrets []string   `json:"pod_secrets"`
}

type candidateOut struct {
	Secret   string `json:"secret"`
	Username string `json:"username"`
	Password string `json:"password"`
}

type answerOut struct {
	// "" when the lookup ran; "image" when ParseImageName failed; "keyring"
	// when MakeDockerKeyring failed (a pull secret's docker config).
	Error      string         `json:"error"`
	Repository string         `json:"repository"`
	Candidates []candidateOut `json:"candidates"`
}

func answer(c caseIn) answerOut {
	repo, _, _, err := parsers.ParseImageName(c.Image)
	if err != nil {
		return answerOut{Error: "image", Candidates: []candidateOut{}}
	}
	byName := map[string]v1.Secret{}
	for _, s := range c.Secrets {
		secret := v1.Secret{Type: v1.SecretType(s.Type), Data: s.Data}
		secret.Name = s.Name
		secret.Namespace = "oracle"
		byName[s.Name] = secret
	}
	// kubelet_pods.go getPullSecretsForPod
	pullSecrets := []v1.Secret{}
	for _, ref := range c.PodSecrets {
		if len(ref) == 0 {
			continue
		}
		s, ok := byName[ref]
		if !ok {
			continue
		}
		pullSecrets = append(pullSecrets, s)
	}
	// image_manager.go makeLookupPullCredentialsFunc, with an empty node keyring
	// and no credential-provider plugins
	keyring, err := credentialprovidersecrets.MakeDockerKeyring(pullSecrets, credentialprovider.UnionDockerKeyring{&credentialprovider.BasicDockerKeyring{}})
	if err != nil {
		return answerOut{Error: "keyring", Repository: repo, Candidates: []candidateOut{}}
	}
	creds, _ := keyring.Lookup(repo)
	out := answerOut{Repository: repo, Candidates: []candidateOut{}}
	for _, cred := range creds {
		name := ""
		if cred.Source != nil && cred.Source.Secret != nil {
			name = cred.Source.Secret.Name
		}
		out.Candidates = append(out.Candidates, candidateOut{Secret: name, Username: cred.Username, Password: cred.Password})
	}
	return out
}

func main() {
	// The source of a credential (its secret) is recorded only with this gate
	// on (beta, on by default since 1.35); set it so that the answer names it.
	if err := utilfeature.DefaultMutableFeatureGate.Set("KubeletEnsureSecretPulledImages=true"); err != nil {
		fmt.Fprintln(os.Stderr, "kubelet-oracle:", err)
		os.Exit(1)
	}
	var cases []caseIn
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fmt.Fprintln(os.Stderr, "kubelet-oracle: reading cases:", err)
		os.Exit(1)
	}
	answers := make([]answerOut, 0, len(cases))
	for _, c := range cases {
		answers = append(answers, answer(c))
	}
	if err := json.NewEncoder(os.Stdout).Encode(answers); err != nil {
		fmt.Fprintln(os.Stderr, "kubelet-oracle: writing answers:", err)
		os.Exit(1)
	}
}
