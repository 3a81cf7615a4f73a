package gitlabemu

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"
)

// GitLab's container-registry token service (JwtController plus
// Auth::ContainerRegistryAuthenticationService), reduced to what deploy
// tokens can do. See the package documentation for the rules.

const (
	jwtAuthPath = "/jwt/auth"
	// registryService is the only service= this emulator serves, and the
	// aud claim of every token it issues.
	registryService = "container_registry"
	// DefaultIssuer is the iss claim of registry tokens, GitLab's default
	// (gitlab.rb registry['issuer'], issuer: in the registry's config).
	DefaultIssuer = "gitlab-issuer"
	// registryTokenTTL is GitLab's self-managed default token lifetime
	// (container_registry_token_expire_delay, 5 minutes).
	registryTokenTTL = 5 * time.Minute
	// registryTokenBackdate is how far nbf precedes iat, as GitLab does.
	registryTokenBackdate = 5 * time.Second
	jwtKeyBits            = 2048
)

// jwtAccessDeniedMessage is JwtController#render_access_denied's message.
const jwtAccessDeniedMessage = "HTTP Basic: Access denied. If a password was provided for Git authentication, the password was incorrect or you're required to use a token instead of a password. If a token was provided, it was either incorrect, expired, or improperly scoped."

// jwtSigner is the emulator's registry token signing key, made once per
// Server on first use: 2048-bit RSA generation is too slow to pay in every
// New() when most tests never touch the registry.
type jwtSigner struct {
	key  *rsa.PrivateKey
	kid  string
	jwks []byte
}

func (s *Server) signer() *jwtSigner {
	s.jwtOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, jwtKeyBits)
		if err != nil {
			panic(fmt.Sprintf("gitlabemu: generate registry signing key: %v", err))
		}
		kid, err := libtrustKeyID(&key.PublicKey)
		if err != nil {
			panic(fmt.Sprintf("gitlabemu: registry key id: %v", err))
		}
		b64 := base64.RawURLEncoding
		jwks, err := json.Marshal(map[string][]jwkJSON{"keys": {{
			Kty: "RSA",
			Alg: "RS256",
			Use: "sig",
			Kid: kid,
			N:   b64.EncodeToString(key.N.Bytes()),
			E:   b64.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
		}}})
		if err != nil {
			panic(fmt.Sprintf("gitlabemu: marshal JWKS: %v", err))
		}
		s.jwt = &jwtSigner{key: key, kid: kid, jwks: jwks}
	})
	return s.jwt
}

type jwkJSON struct {
	Kty string `json:"kty"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// libtrustKeyID is docker/libtrust's key fingerprint, which GitLab puts in
// the kid header: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits,
// base32 without padding, in colon-separated groups of four.
func libtrustKeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	enc := strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:30]), "=")
	var b strings.Builder
	for i := 0; i < len(enc); i += 4 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(enc[i:min(i+4, len(enc))])
	}
	return b.String(), nil
}

// JWKS is the JSON Web Key Set with the public half of the key that signs
// registry tokens, for the registry's auth.token.jwks file. The kid matches
// the kid header of every token the emulator issues.
func (s *Server) JWKS() []byte {
	return bytes.Clone(s.signer().jwks)
}

// Issuer is the iss claim of registry tokens, which the registry's
// auth.token.issuer must equal.
func (s *Server) Issuer() string {
	return DefaultIssuer
}

// registryAccess is one entry of the access claim.
type registryAccess struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

type registryClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  string           `json:"aud"`
	IssuedAt  int64            `json:"iat"`
	NotBefore int64            `json:"nbf"`
	Expires   int64            `json:"exp"`
	JTI       string           `json:"jti"`
	Access    []registryAccess `json:"access"`
}

func registryError(status int, code, msg string) *response {
	type entry struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	return jsonResponse(status, map[string][]entry{"errors": {{code, msg}}})
}

func jwtAccessDenied() *response {
	resp := registryError(http.StatusUnauthorized, "UNAUTHORIZED", jwtAccessDeniedMessage)
	resp.header.Set("WWW-Authenticate", `Basic realm="GitLab"`)
	return resp
}

// jwtAuth serves GET /jwt/auth. Authentication runs first (it is a
// before_action in GitLab), so wrong credentials get 401 even for an unknown
// service, and only then does an unknown service get its bare 404.
func (s *Server) jwtAuth(r *http.Request) *response {
	username, password, hasBasic := r.BasicAuth()
	var tok DeployToken
	if hasBasic {
		var ok bool
		if tok, ok = s.Authenticate(username, password); !ok {
			return jwtAccessDenied()
		}
	}
	q := r.URL.Query()
	if q.Get("service") != registryService {
		return newResponse(http.StatusNotFound) // head :not_found
	}
	if !hasBasic {
		// GitLab would treat this as an anonymous pull; the rotator always
		// sends credentials, so anything else is a bug worth a loud 401.
		return jwtAccessDenied()
	}
	canPull := slices.Contains(tok.Scopes, "read_registry")
	canPush := slices.Contains(tok.Scopes, "write_registry")
	if !canPull && !canPush {
		return registryError(http.StatusForbidden, "DENIED", "access forbidden")
	}

	access := []registryAccess{}
	for _, raw := range q["scope"] {
		for _, sc := range strings.Fields(raw) {
			a, ok := s.grant(tok, sc, canPull, canPush)
			if ok {
				access = append(access, a)
			}
		}
	}

	// The registry checks iat/nbf/exp against its own wall clock, so they
	// come from the real clock; the emulator clock only decides whether the
	// deploy token itself is still valid.
	now := time.Now()
	claims := registryClaims{
		Issuer:    s.Issuer(),
		Subject:   tok.Username,
		Audience:  registryService,
		IssuedAt:  now.Unix(),
		NotBefore: now.Add(-registryTokenBackdate).Unix(),
		Expires:   now.Add(registryTokenTTL).Unix(),
		JTI:       randomUUID(),
		Access:    access,
	}
	jwt, err := s.signJWT(claims)
	if err != nil {
		return messageResponse(http.StatusInternalServerError, "500 Internal Server Error")
	}
	return jsonResponse(http.StatusOK, map[string]string{"token": jwt})
}

// grant evaluates one requested scope "repository:<name>:<actions>" for a
// deploy token. Like GitLab, the name must resolve to an existing project
// (the registered project whose full path, lowercased as registry paths
// are, is the longest component-wise prefix of the name), and that project
// must be the token's project, or lie under the token's group. Only pull
// (read_registry) and push (write_registry) can be granted to a deploy
// token; an entry with no granted action is left out.
func (s *Server) grant(tok DeployToken, scope string, canPull, canPush bool) (registryAccess, bool) {
	typ, rest, ok := strings.Cut(scope, ":")
	if !ok || typ != "repository" {
		return registryAccess{}, false // registry:catalog:* and the like are admin-only
	}
	i := strings.LastIndex(rest, ":")
	if i <= 0 {
		return registryAccess{}, false
	}
	name, actions := rest[:i], strings.Split(rest[i+1:], ",")
	if !s.tokenReaches(tok, name) {
		return registryAccess{}, false
	}
	var granted []string
	for _, a := range actions {
		if slices.Contains(granted, a) {
			continue
		}
		if (a == "pull" && canPull) || (a == "push" && canPush) {
			granted = append(granted, a)
		}
	}
	if len(granted) == 0 {
		return registryAccess{}, false
	}
	return registryAccess{Type: "repository", Name: name, Actions: granted}, true
}

// tokenReaches reports whether a repository name belongs to a project the
// deploy token may read.
func (s *Server) tokenReaches(tok DeployToken, name string) bool {
	kind, id, err := ParseScope(tok.Scope)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var projectID int64
	best := -1
	for pid, p := range s.projects {
		lp := strings.ToLower(p)
		if (name == lp || strings.HasPrefix(name, lp+"/")) && len(lp) > best {
			projectID, best = pid, len(lp)
		}
	}
	if best < 0 {
		return false
	}
	if kind == kindProject {
		return projectID == id
	}
	g, ok := s.groups[id]
	return ok && strings.HasPrefix(strings.ToLower(s.projects[projectID]), strings.ToLower(g)+"/")
}

// signJWT makes a compact RS256 JWS of the claims.
func (s *Server) signJWT(claims registryClaims) (string, error) {
	sg := s.signer()
	header, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}{"RS256", "JWT", sg.kid})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	b64 := base64.RawURLEncoding
	signingInput := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(rand.Reader, sg.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", err
	}
	return signingInput + "." + b64.EncodeToString(sig), nil
}

// randomUUID is a version 4 UUID, the shape of GitLab's jti
// (SecureRandom.uuid).
func randomUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("gitlabemu: crypto/rand: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
