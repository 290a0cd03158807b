//! The parts of Go's standard library the kubelet's keyring leans on, with
//! Go's exact acceptance rules: `net/url.Parse` of an `http(s)://` URL (host
//! and path only), `net/netip.ParseAddr` (validity only), `net.SplitHostPort`
//! and `path/filepath.Match` (Unix). Everything works on bytes, as Go strings
//! do: a `%FF` in a key is a byte, not text.

/// The two fields of a parsed `url.URL` the keyring uses: `Host` (with the
/// port) and `Path`, both unescaped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct GoUrl {
    pub host: Vec<u8>,
    pub path: Vec<u8>,
}

/// `url.Parse(raw)`; `None` where Go returns an error.
pub(crate) fn parse(raw: &[u8]) -> Option<GoUrl> {
    let (url, fragment) = match raw.iter().position(|&b| b == b'#') {
        Some(at) => (&raw[..at], Some(&raw[at + 1..])),
        None => (raw, None),
    };
    let parsed = parse_without_fragment(url)?;
    if let Some(fragment) = fragment
        && !fragment.is_empty()
    {
        unescape(fragment, Mode::Other)?;
    }
    Some(parsed)
}

fn parse_without_fragment(raw: &[u8]) -> Option<GoUrl> {
    if raw.iter().any(|&b| b < b' ' || b == 0x7f) {
        return None;
    }
    if raw == b"*" {
        return Some(GoUrl {
            host: Vec::new(),
            path: b"*".to_vec(),
        });
    }
    let (scheme, rest) = scheme(raw)?;
    let rest =
        if rest.ends_with(b"?") && rest.iter().position(|&b| b == b'?') == Some(rest.len() - 1) {
            &rest[..rest.len() - 1]
        } else {
            match rest.iter().position(|&b| b == b'?') {
                Some(at) => &rest[..at],
                None => rest,
            }
        };
    if !rest.starts_with(b"/") {
        if !scheme.is_empty() {
            // opaque: no host, no path
            return Some(GoUrl {
                host: Vec::new(),
                path: Vec::new(),
            });
        }
        let segment = rest.split(|&b| b == b'/').next().unwrap_or_default();
        if segment.contains(&b':') {
            return None;
        }
    }
    let mut host = Vec::new();
    let mut rest = rest;
    if (!scheme.is_empty() || !rest.starts_with(b"///")) && rest.starts_with(b"//") {
        let authority_and_path = &rest[2..];
        let (authority, path) = match authority_and_path.iter().position(|&b| b == b'/') {
            Some(at) => authority_and_path.split_at(at),
            None => (authority_and_path, &b""[..]),
        };
        host = parse_authority(&scheme, authority)?;
        rest = path;
    }
    let path = unescape(rest, Mode::Other)?;
    Some(GoUrl { host, path })
}

/// `getScheme`: the scheme (lower-cased) and the rest.
fn scheme(raw: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    for (i, &c) in raw.iter().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return None,
            b':' => return Some((raw[..i].to_ascii_lowercase(), &raw[i + 1..])),
            _ => return Some((Vec::new(), raw)),
        }
    }
    Some((Vec::new(), raw))
}

fn parse_authority(scheme: &[u8], authority: &[u8]) -> Option<Vec<u8>> {
    let at = authority.iter().rposition(|&b| b == b'@');
    let host = parse_host(scheme, &authority[at.map_or(0, |i| i + 1)..])?;
    if let Some(at) = at {
        let userinfo = &authority[..at];
        // validUserinfo ranges over runes: anything but these ASCII bytes fails
        if !userinfo
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b))
        {
            return None;
        }
        for part in userinfo.splitn(2, |&b| b == b':') {
            unescape(part, Mode::Other)?;
        }
    }
    Some(host)
}

fn parse_host(scheme: &[u8], host: &[u8]) -> Option<Vec<u8>> {
    match host.iter().rposition(|&b| b == b'[') {
        Some(open) if open > 0 => None,
        Some(_) => {
            let close = host.iter().rposition(|&b| b == b']')?;
            let colon_port = &host[close + 1..];
            if !valid_optional_port(colon_port) {
                return None;
            }
            let hostname = &host[1..close];
            let unescaped = match find(hostname, b"%25") {
                Some(zone) => {
                    let mut text = unescape(&hostname[..zone], Mode::Host)?;
                    text.extend(unescape(&hostname[zone..], Mode::Zone)?);
                    text
                }
                None => unescape(hostname, Mode::Host)?,
            };
            if parse_addr(&unescaped)? == Addr::V4 {
                return None;
            }
            let mut out = Vec::with_capacity(unescaped.len() + 2 + colon_port.len());
            out.push(b'[');
            out.extend(unescaped);
            out.push(b']');
            out.extend_from_slice(colon_port);
            Some(out)
        }
        None => {
            if let Some(first_colon) = host.iter().position(|&b| b == b':') {
                // Go 1.26 (urlstrictcolons): for http and https the port starts at
                // the first colon, so a second colon makes the port invalid
                let colon = if scheme == b"http" || scheme == b"https" {
                    first_colon
                } else {
                    host.iter().rposition(|&b| b == b':').unwrap_or(first_colon)
                };
                if !valid_optional_port(&host[colon..]) {
                    return None;
                }
            }
            unescape(host, Mode::Host)
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `""` or `:` followed by digits.
fn valid_optional_port(port: &[u8]) -> bool {
    match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Host,
    Zone,
    /// path, fragment, userinfo: only `%` escapes are checked
    Other,
}

/// Bytes Go allows unescaped in a host (`shouldEscape(c, encodeHost)` is false).
fn host_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!$&'()*+,;=:[]<>\"-_.~".contains(&c)
}

fn unhex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// `url.unescape`: `%XX` to a byte; `None` on a bad escape, and for hosts
/// on an ASCII byte that a host cannot hold or on `%XX` of an ASCII byte
/// (other than `%25`).
fn unescape(s: &[u8], mode: Mode) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if i + 2 >= s.len() || !s[i + 1].is_ascii_hexdigit() || !s[i + 2].is_ascii_hexdigit() {
                return None;
            }
            let byte = (unhex(s[i + 1]) << 4) | unhex(s[i + 2]);
            let escape = &s[i..i + 3];
            if mode == Mode::Host && unhex(s[i + 1]) < 8 && escape != b"%25" {
                return None;
            }
            if mode == Mode::Zone && escape != b"%25" && byte != b' ' && !host_byte(byte) {
                return None;
            }
            out.push(byte);
            i += 3;
        } else {
            if mode != Mode::Other && s[i] < 0x80 && !host_byte(s[i]) {
                return None;
            }
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

#[derive(Debug, PartialEq, Eq)]
enum Addr {
    V4,
    V6,
}

/// `netip.ParseAddr`: which kind of address, `None` if invalid.
fn parse_addr(s: &[u8]) -> Option<Addr> {
    for &c in s {
        match c {
            b'.' => return parse_ipv4(s).then_some(Addr::V4),
            b':' => return parse_ipv6(s).then_some(Addr::V6),
            b'%' => return None,
            _ => {}
        }
    }
    None
}

fn parse_ipv4(s: &[u8]) -> bool {
    let mut value = 0u32;
    let mut digits = 0;
    let mut dots = 0;
    for (i, &c) in s.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                if digits == 1 && value == 0 {
                    return false;
                }
                value = value * 10 + u32::from(c - b'0');
                digits += 1;
                if value > 255 {
                    return false;
                }
            }
            b'.' => {
                if i == 0 || i == s.len() - 1 || s[i - 1] == b'.' || dots == 3 {
                    return false;
                }
                dots += 1;
                value = 0;
                digits = 0;
            }
            _ => return false,
        }
    }
    dots == 3
}

fn parse_ipv6(input: &[u8]) -> bool {
    let mut s = input;
    if let Some(at) = s.iter().position(|&b| b == b'%') {
        if at + 1 == s.len() {
            return false;
        }
        s = &s[..at];
    }
    let mut ellipsis: Option<usize> = None;
    if s.starts_with(b"::") {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return true;
        }
    }
    let mut i = 0;
    while i < 16 {
        let mut off = 0;
        let mut acc = 0u32;
        while off < s.len() && s[off].is_ascii_hexdigit() {
            acc = (acc << 4) + u32::from(unhex(s[off]));
            if off > 3 || acc > 0xffff {
                return false;
            }
            off += 1;
        }
        if off == 0 {
            return false;
        }
        if off < s.len() && s[off] == b'.' {
            if (ellipsis.is_none() && i != 12) || i + 4 > 16 {
                return false;
            }
            if !parse_ipv4(s) {
                return false;
            }
            s = &[];
            i += 4;
            break;
        }
        i += 2;
        s = &s[off..];
        if s.is_empty() {
            break;
        }
        if s[0] != b':' || s.len() == 1 {
            return false;
        }
        s = &s[1..];
        if s[0] == b':' {
            if ellipsis.is_some() {
                return false;
            }
            ellipsis = Some(i);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return false;
    }
    if i < 16 {
        ellipsis.is_some()
    } else {
        ellipsis.is_none()
    }
}

/// `credentialprovider.SplitURL` over `net.SplitHostPort`: the host's
/// dot-separated labels and the port (`""` when the host has none, or when
/// `SplitHostPort` refuses it).
pub(crate) fn split_host(host_port: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let (host, port) = split_host_port(host_port).unwrap_or((host_port, b""));
    (host.split(|&b| b == b'.').collect(), port)
}

fn split_host_port(hostport: &[u8]) -> Option<(&[u8], &[u8])> {
    let last_colon = hostport.iter().rposition(|&b| b == b':')?;
    let (host, j, k) = if hostport[0] == b'[' {
        let end = hostport.iter().position(|&b| b == b']')?;
        if end + 1 != last_colon {
            return None;
        }
        (&hostport[1..end], 1, end + 1)
    } else {
        let host = &hostport[..last_colon];
        if host.contains(&b':') {
            return None;
        }
        (host, 0, 0)
    };
    if hostport[j..].contains(&b'[') || hostport[k..].contains(&b']') {
        return None;
    }
    Some((host, &hostport[last_colon + 1..]))
}

/// `utf8.DecodeRune`: the rune and its length; (U+FFFD, 1) for a bad byte.
fn decode_rune(s: &[u8]) -> (u32, usize) {
    let prefix = &s[..s.len().min(4)];
    let text = match std::str::from_utf8(prefix) {
        Ok(text) => text,
        Err(error) if error.valid_up_to() > 0 => {
            std::str::from_utf8(&prefix[..error.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return (0xFFFD, 1),
    };
    text.chars()
        .next()
        .map_or((0xFFFD, 1), |c| (u32::from(c), c.len_utf8()))
}

/// `filepath.Match(pattern, name)` on Unix; a malformed pattern does not match
/// (the keyring treats Go's `ErrBadPattern` as no match).
pub(crate) fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    glob(pattern, name).unwrap_or(false)
}

fn glob(mut pattern: &[u8], mut name: &[u8]) -> Option<bool> {
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Some(!name.contains(&b'/'));
        }
        let result = match_chunk(chunk, name);
        if let Ok(Some(t)) = result
            && (t.is_empty() || !pattern.is_empty())
        {
            name = t;
            continue;
        }
        result.ok()?;
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                match match_chunk(chunk, &name[i + 1..]) {
                    Ok(Some(t)) => {
                        if pattern.is_empty() && !t.is_empty() {
                            i += 1;
                            continue;
                        }
                        name = t;
                        continue 'pattern;
                    }
                    Ok(None) => {}
                    Err(()) => return None,
                }
                i += 1;
            }
        }
        return Some(false);
    }
    Some(name.is_empty())
}

fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while pattern.first() == Some(&b'*') {
        pattern = &pattern[1..];
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => return (star, &pattern[..i], &pattern[i..]),
            _ => {}
        }
        i += 1;
    }
    (star, pattern, &[])
}

/// `Ok(Some(rest))` matched, `Ok(None)` did not, `Err` bad pattern.
fn match_chunk<'n>(mut chunk: &[u8], mut s: &'n [u8]) -> Result<Option<&'n [u8]>, ()> {
    let mut failed = false;
    while !chunk.is_empty() {
        failed = failed || s.is_empty();
        match chunk[0] {
            b'[' => {
                let mut r = 0;
                if !failed {
                    let (rune, n) = decode_rune(s);
                    r = rune;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.first() == Some(&b'^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk[0] == b'-' {
                        let (h, rest) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    matched = matched || (lo <= r && r <= hi);
                    ranges += 1;
                }
                failed = failed || matched == negated;
            }
            b'?' => {
                if !failed {
                    failed = s[0] == b'/';
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            c => {
                let literal = if c == b'\\' {
                    chunk = &chunk[1..];
                    *chunk.first().ok_or(())?
                } else {
                    c
                };
                if !failed {
                    failed = literal != s[0];
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok((!failed).then_some(s))
}

fn get_esc(mut chunk: &[u8]) -> Result<(u32, &[u8]), ()> {
    if chunk.is_empty() || chunk[0] == b'-' || chunk[0] == b']' {
        return Err(());
    }
    if chunk[0] == b'\\' {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return Err(());
        }
    }
    let (r, n) = decode_rune(chunk);
    let rest = &chunk[n..];
    if (r == 0xFFFD && n == 1) || rest.is_empty() {
        return Err(());
    }
    Ok((r, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(raw: &str) -> Option<(String, String)> {
        parse(raw.as_bytes()).map(|u| {
            (
                String::from_utf8_lossy(&u.host).into_owned(),
                String::from_utf8_lossy(&u.path).into_owned(),
            )
        })
    }

    #[allow(clippy::unnecessary_wraps)]
    fn pair(host: &str, path: &str) -> Option<(String, String)> {
        Some((host.into(), path.into()))
    }

    #[test]
    fn parses_like_net_url() {
        assert_eq!(url("https://quay.io"), pair("quay.io", ""));
        assert_eq!(
            url("https://quay.io:5000/a/b"),
            pair("quay.io:5000", "/a/b")
        );
        assert_eq!(url("https://u:p@quay.io/x?q#f"), pair("quay.io", "/x"));
        assert_eq!(url("https://quay.io/a%2Fb"), pair("quay.io", "/a/b"));
        assert_eq!(url("https://quay.io:"), pair("quay.io:", ""));
        assert_eq!(url("https://*.quay.io"), pair("*.quay.io", ""));
        assert_eq!(url("https://[::1]:5000/x"), pair("[::1]:5000", "/x"));
        assert_eq!(url("https://[fe80::1%25en0]"), pair("[fe80::1%en0]", ""));
        for bad in [
            "https://quay.io:x",
            "https://a:1:2",
            "https://quay io",
            "https://quay.io/\n",
            "https://quay.io/%zz",
            "https://quay.io#%zz",
            "https://a[b]",
            "https://[1.2.3.4]",
            "https://[:::]",
            "https://qu%41y.io",
            "https://u{@quay.io",
        ] {
            assert_eq!(url(bad), None, "{bad}");
        }
        assert_eq!(url("https://qu%C3%A9.io"), pair("qué.io", ""));
    }

    #[test]
    fn ipv6_as_netip() {
        for good in [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "::ffff:1.2.3.4",
            "fe80::1%x",
        ] {
            assert!(parse_ipv6(good.as_bytes()), "{good}");
        }
        for bad in [
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            "12345::",
            "1:2",
            "::1%",
            ":1",
            "1:2:3:4:5:6:7::8",
            "::01.2.3.4",
        ] {
            assert!(!parse_ipv6(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn split_host_port_as_net() {
        let s = |h: &str| {
            let (parts, port) = split_host(h.as_bytes());
            (
                parts
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect::<Vec<_>>(),
                String::from_utf8_lossy(port).into_owned(),
            )
        };
        assert_eq!(s("a.b:5000"), (vec!["a".into(), "b".into()], "5000".into()));
        assert_eq!(s("a.b:"), (vec!["a".into(), "b".into()], String::new()));
        assert_eq!(s("a.b"), (vec!["a".into(), "b".into()], String::new()));
        assert_eq!(s("[::1]:80"), (vec!["::1".into()], "80".into()));
        assert_eq!(s("[::1]"), (vec!["[::1]".into()], String::new()));
    }

    #[test]
    fn glob_as_filepath_match() {
        // a selection of path/filepath's match_test.go table that applies to one label
        let table: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*b*c*d*e*", "axbxcxdxe", true),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("[]a]", "]", false),
            ("[-]", "-", false),
            ("[x-]", "x", false),
            ("[-x]", "x", false),
            ("\\", "a", false),
            ("[a-b-c]", "a", false),
            ("[", "a", false),
            ("[^", "a", false),
            ("[^bc", "a", false),
            ("a[", "a", false),
            ("a[", "ab", false),
            ("a[", "x", false),
            ("a/b[", "x", false),
            ("*x", "xxx", true),
        ];
        for (pattern, name, want) in table {
            assert_eq!(
                glob_match(pattern.as_bytes(), name.as_bytes()),
                *want,
                "{pattern} {name}"
            );
        }
    }
}
