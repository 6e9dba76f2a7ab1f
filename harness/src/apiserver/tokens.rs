//! Service account tokens, as the API server issues and accepts them: JWTs signed with
//! the server's key (ES256; `--service-account-signing-key-file`, else one made at
//! start), asked for through `serviceaccounts/{name}/token` (a `TokenRequest`: what the
//! kubelet asks for each pod's `kube-api-access-*` volume, and `kubectl create token`),
//! and taken on every request as the service account they name, while the account (and
//! the pod, secret or node a token is bound to) still exists with the same uid.
//!
//! The claims are Kubernetes': `iss`, `sub: system:serviceaccount:<ns>:<name>`, `aud`,
//! `exp`, `iat`, `nbf`, `jti` and `kubernetes.io` (namespace, service account, bound
//! object, node, `warnafter`). A token the kubelet asks for (3607 s, bound to a pod) is
//! valid for a year and carries `warnafter` at its requested end, as
//! `--service-account-extend-token-expiration` (on by default) makes it.

use super::objects::{self, stored};
use super::status::{ApiError, Subject};
use super::{ApiServer, resources};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The issuer (and the audience the API server takes), as kind and kubeadm set
/// `--service-account-issuer`.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// What a TokenRequest gets without `expirationSeconds`.
const DEFAULT_EXPIRATION: i64 = 3600;
/// The kubelet's ask for projected tokens: such a token, bound to a pod, is extended.
const KUBELET_EXPIRATION: i64 = 3607;
/// How long an extended token is valid (`ExpirationExtensionSeconds`: a year).
const EXTENDED_EXPIRATION: i64 = 365 * 24 * 3600;
/// The clock skew allowed on `nbf` and `exp` (go-jose's default leeway).
const LEEWAY: i64 = 60;
/// A P-256 public key's SubjectPublicKeyInfo, before the 65 bytes of the point: the key id
/// is the SHA-256 of that DER, as Kubernetes derives `kid`.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The API server's service account signing key.
pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    random: SystemRandom,
}

impl std::fmt::Debug for Signer {
    /// The key stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Signer {
    /// A fresh key: tokens it signs die with the process.
    pub fn generate() -> Result<Signer, String> {
        let random = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &random)
            .map_err(|_| "cannot make a service account signing key: the system's random source failed".to_string())?;
        Signer::from_pkcs8(pkcs8.as_ref())
    }

    /// A new key, PEM (PKCS#8): what a container cluster gives its API server, so tokens
    /// outlive the server's restarts.
    pub fn generate_pem() -> Result<String, String> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| "cannot make a service account signing key: the system's random source failed".to_string())?;
        let body = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
        let lines: Vec<&str> =
            body.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).unwrap_or_default()).collect();
        Ok(format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n")))
    }

    /// The key of a PEM file: a PKCS#8 P-256 private key (`openssl genpkey -algorithm EC
    /// -pkeyopt ec_paramgen_curve:P-256`).
    pub fn from_pem(pem: &str) -> Result<Signer, String> {
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject;
        let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("not a PEM private key: {e}"))?;
        match key {
            PrivateKeyDer::Pkcs8(der) => Signer::from_pkcs8(der.secret_pkcs8_der()),
            _ => Err("the key must be PKCS#8 (\"BEGIN PRIVATE KEY\"), an EC P-256 key".into()),
        }
    }

    fn from_pkcs8(der: &[u8]) -> Result<Signer, String> {
        let random = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &random)
            .map_err(|e| format!("not an EC P-256 PKCS#8 key: {e}"))?;
        let mut spki = SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(Signer { key, kid, random })
    }

    /// A signed token of `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let message =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signed =
            self.key.sign(&self.random, message.as_bytes()).map_err(|_| "signing the token failed".to_string())?;
        Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(signed.as_ref())))
    }

    /// The claims of a token this key signed, valid at `now`; `Err` says why not.
    pub fn verify(&self, token: &str, now: i64) -> Result<Value, String> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a JWT".into());
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| "not a JWT".to_string());
        let header: Value = serde_json::from_slice(&decode(header)?).map_err(|_| "not a JWT".to_string())?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256")
            || header.get("kid").and_then(Value::as_str) != Some(&self.kid)
        {
            return Err("not signed by this server's service account key".into());
        }
        let public = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, self.key.public_key());
        let signed = format!("{}.{payload}", token.split('.').next().unwrap_or_default());
        public.verify(signed.as_bytes(), &decode(sig)?).map_err(|_| "invalid signature".to_string())?;
        let claims: Value = serde_json::from_slice(&decode(payload)?).map_err(|_| "not a JWT".to_string())?;
        if claims.get("iss").and_then(Value::as_str) != Some(ISSUER) {
            return Err("issuer is not this server".into());
        }
        let audiences = claims.get("aud").and_then(Value::as_array).cloned().unwrap_or_default();
        if !audiences.iter().any(|a| a.as_str() == Some(ISSUER)) {
            return Err("token audiences is invalid for the target audiences".into());
        }
        let time = |name: &str| claims.get(name).and_then(Value::as_i64);
        if time("exp").is_none_or(|exp| now > exp + LEEWAY) {
            return Err("service account token has expired".into());
        }
        if time("nbf").is_some_and(|nbf| now + LEEWAY < nbf) {
            return Err("service account token is not valid yet".into());
        }
        Ok(claims)
    }
}

fn seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// Who a token names, if it is a service account token of this server that is still
/// good: the account and what it is bound to exist with the uids it was issued for.
pub async fn authenticate(server: &ApiServer, token: &str) -> Result<String, String> {
    let now = seconds(server.options.clock.now());
    let claims = server.options.service_account_signer.verify(token, now)?;
    let k8s = claims.get("kubernetes.io").cloned().unwrap_or(Value::Null);
    let namespace = text(&k8s, "/namespace");
    let account = text(&k8s, "/serviceaccount/name");
    let found = stored(server, ("", "ServiceAccount"), Some(namespace), account).await.map_err(|e| e.message)?;
    if found.as_ref().map(|a| text(a, "/metadata/uid")) != Some(text(&k8s, "/serviceaccount/uid")) {
        return Err(format!("service account {namespace}/{account} has been deleted"));
    }
    for (kind, namespaced) in [("Pod", true), ("Secret", true), ("Node", false)] {
        let Some(bound) = k8s.get(kind.to_lowercase().as_str()) else { continue };
        // A pod-bound token names its node too (informational): only the pod binds it.
        if kind == "Node" && k8s.get("pod").is_some() {
            continue;
        }
        let name = text(bound, "/name");
        let object = stored(server, ("", kind), namespaced.then_some(namespace), name).await.map_err(|e| e.message)?;
        let live = object.as_ref().filter(|o| text(o, "/metadata/uid") == text(bound, "/uid"));
        let deleted = live.is_none_or(|o| {
            o.pointer("/metadata/deletionTimestamp")
                .and_then(Value::as_str)
                .is_some_and(|at| server.options.clock.since(at).is_some_and(|past| past > Duration::ZERO))
        });
        if deleted {
            return Err(format!("{kind} {name} has been deleted"));
        }
    }
    Ok(format!("system:serviceaccount:{namespace}:{account}"))
}

fn invalid(causes: Vec<(String, String, String)>) -> ApiError {
    ApiError::invalid(Subject { group: "authentication.k8s.io", kind: "TokenRequest", name: "" }, causes)
}

/// `POST serviceaccounts/{name}/token`: a token for the account, as a `TokenRequest`.
pub async fn request(
    server: &ApiServer,
    namespace: &str,
    name: &str,
    headers: &axum::http::HeaderMap,
    body: &bytes::Bytes,
) -> Result<Value, ApiError> {
    // JSON, YAML or protobuf (kubectl sends protobuf), as any other request body.
    let mut request: Value =
        if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { objects::decode(headers, body)? };
    if !request.is_object() {
        return Err(ApiError::bad_request("the TokenRequest is not an object"));
    }
    if let Some(kind) = request.get("kind").and_then(Value::as_str).filter(|k| *k != "TokenRequest") {
        return Err(ApiError::bad_request(format!("expected a TokenRequest, got a {kind}")));
    }
    let accounts = resources::by_kind("", "ServiceAccount").ok_or_else(|| ApiError::internal("no service accounts"))?;
    let account = stored(server, ("", "ServiceAccount"), Some(namespace), name)
        .await?
        .ok_or_else(|| objects::not_found(accounts, name))?;
    if !request.get("spec").is_some_and(Value::is_object) {
        request["spec"] = json!({});
    }
    let spec = &mut request["spec"];
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION,
        Some(value) => {
            value.as_i64().ok_or_else(|| ApiError::bad_request("spec.expirationSeconds is not an integer"))?
        }
    };
    let why = if expiration < 600 {
        Some("may not specify a duration less than 10 minutes")
    } else if expiration > 1 << 32 {
        Some("may not specify a duration larger than 2^32 seconds")
    } else {
        None
    };
    if let Some(why) = why {
        return Err(invalid(vec![(
            "spec.expirationSeconds".into(),
            format!("Invalid value: {expiration}: {why}"),
            "FieldValueInvalid".into(),
        )]));
    }
    spec["expirationSeconds"] = json!(expiration);
    let audiences = spec.get("audiences").and_then(Value::as_array).filter(|a| !a.is_empty()).cloned();
    let audiences = audiences.unwrap_or_else(|| vec![json!(ISSUER)]);
    spec["audiences"] = Value::Array(audiences.clone());

    let now = server.options.clock.now();
    let issued = seconds(now);
    let mut k8s = json!({
        "namespace": namespace,
        "serviceaccount": {"name": name, "uid": text(&account, "/metadata/uid")},
    });
    let mut extend = false;
    if let Some(reference) = spec.get("boundObjectRef").filter(|r| !r.is_null()).cloned() {
        let kind = text(&reference, "/kind");
        let bound_name = text(&reference, "/name");
        let namespaced = match kind {
            "Pod" | "Secret" => true,
            "Node" => false,
            other => {
                return Err(invalid(vec![(
                    "spec.boundObjectRef.kind".into(),
                    format!("Unsupported value: {other:?}: supported values: \"Node\", \"Pod\", \"Secret\""),
                    "FieldValueNotSupported".into(),
                )]));
            }
        };
        let resource = resources::by_kind("", kind).ok_or_else(|| ApiError::internal("bound kind not served"))?;
        let object = stored(server, ("", kind), namespaced.then_some(namespace), bound_name)
            .await?
            .ok_or_else(|| objects::not_found(resource, bound_name))?;
        let uid = text(&object, "/metadata/uid");
        let asked = text(&reference, "/uid");
        if !asked.is_empty() && asked != uid {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {kind}.authentication.k8s.io {bound_name:?}: the UID in the bound \
                     object reference ({asked}) does not match the UID in record. The object might have been deleted \
                     and then recreated"
                ),
            ));
        }
        k8s[kind.to_lowercase()] = json!({"name": bound_name, "uid": uid});
        if kind == "Pod" {
            // A pod-bound token names the pod's node too (Kubernetes 1.30 on).
            let node = text(&object, "/spec/nodeName");
            if !node.is_empty()
                && let Some(found) = stored(server, ("", "Node"), None, node).await?
            {
                k8s["node"] = json!({"name": node, "uid": text(&found, "/metadata/uid")});
            }
            extend = expiration == KUBELET_EXPIRATION;
        }
    }
    let lifetime = if extend { EXTENDED_EXPIRATION } else { expiration };
    if extend {
        k8s["warnafter"] = json!(issued + expiration);
    }
    let claims = json!({
        "aud": audiences,
        "exp": issued + lifetime,
        "iat": issued,
        "iss": ISSUER,
        "jti": objects::uid(),
        "kubernetes.io": k8s,
        "nbf": issued,
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
    });
    let token = server.options.service_account_signer.sign(&claims).map_err(ApiError::internal)?;
    let expires = crate::clock::format(now + Duration::from_secs(expiration as u64));
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    request["metadata"] = json!({"name": name, "namespace": namespace, "creationTimestamp": null});
    request["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Value {
        json!({"iss": ISSUER, "aud": [ISSUER], "exp": exp, "nbf": 1000, "sub": "system:serviceaccount:a:b"})
    }

    #[test]
    fn tokens_verify_with_their_key_only_and_only_in_time() {
        let signer = Signer::generate().unwrap();
        let token = signer.sign(&claims(5000)).unwrap();
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(signer.verify(&token, 2000).unwrap()["sub"], "system:serviceaccount:a:b");
        assert_eq!(signer.verify(&token, 6000).unwrap_err(), "service account token has expired");
        assert_eq!(signer.verify(&token, 100).unwrap_err(), "service account token is not valid yet");
        let other = Signer::generate().unwrap();
        assert!(other.verify(&token, 2000).is_err());
        // A payload changed after signing.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(claims(9_999_999).to_string());
        assert_eq!(
            signer.verify(&format!("{}.{forged}.{}", parts[0], parts[2]), 2000).unwrap_err(),
            "invalid signature"
        );
        let mut elsewhere = claims(5000);
        elsewhere["aud"] = json!(["vault"]);
        assert!(signer.verify(&signer.sign(&elsewhere).unwrap(), 2000).unwrap_err().contains("audiences"));
        for junk in ["", "a.b", "a.b.c.d", "!!.??.##"] {
            assert!(signer.verify(junk, 2000).is_err(), "{junk}");
        }
    }

    #[test]
    fn a_key_in_pem_signs_what_it_verifies_after_a_reload() {
        let pem = Signer::generate_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let (a, b) = (Signer::from_pem(&pem).unwrap(), Signer::from_pem(&pem).unwrap());
        assert_eq!(a.kid, b.kid);
        assert!(b.verify(&a.sign(&claims(5000)).unwrap(), 2000).is_ok());
        assert!(Signer::from_pem("not pem").is_err());
        assert!(!format!("{a:?}").contains("key:"));
    }
}
