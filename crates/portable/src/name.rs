//! Image names, the unit prefix derived from an image argument, unit matching, and matching the
//! images named in a drop-in marker against a request (pure).

use std::path::Path;

/// Unit types a portable image may provide.
pub const PORTABLE_SUFFIXES: [&str; 5] = [".service", ".socket", ".target", ".timer", ".path"];

/// Whether `s` can name an image in the search path (rather than being a path).
pub fn is_valid_image_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 255
        && !s.contains('/')
        && !s.starts_with(".#")
        && !s.chars().any(char::is_control)
}

/// The image name of a file or directory: the file name with `.raw` removed.
pub fn image_name_of(path: &Path) -> String {
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    base.strip_suffix(".raw").unwrap_or(&base).to_owned()
}

/// The unit prefix portablectl derives from an image argument: the last path component, cut at
/// the first `_`, else with a `.raw` suffix removed; it may only hold `[A-Za-z0-9.-]`.
pub fn prefix_of(image_arg: &str) -> Option<String> {
    let trimmed = image_arg.trim_end_matches('/');
    let base = trimmed.rsplit('/').next().unwrap_or(trimmed);
    let prefix = match base.split_once('_') {
        Some((stem, _)) => stem,
        None => base.strip_suffix(".raw").unwrap_or(base),
    };
    let valid = !prefix.is_empty()
        && prefix != "."
        && prefix != ".."
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    valid.then(|| prefix.to_owned())
}

/// Whether unit file `name` is one a portable image may provide and one of `matches` selects
/// (an empty list selects all): the prefix must be followed by `-`, `.`, `@` or the end.
pub fn unit_matches(name: &str, matches: &[String]) -> bool {
    let Some(dot) = name.rfind('.') else {
        return false;
    };
    if !PORTABLE_SUFFIXES.contains(&&name[dot..]) {
        return false;
    }
    matches.is_empty()
        || matches.iter().any(|p| {
            name.strip_prefix(p.as_str())
                .is_some_and(|rest| matches!(rest.bytes().next(), None | Some(b'-' | b'.' | b'@')))
        })
}

/// The last path component of `s` (everything after the last `/`, which may be empty).
fn last_component(s: &str) -> &str {
    let t = s.trim_end_matches('/');
    match t.rfind('/') {
        Some(i) => &s[i + 1..],
        None => s,
    }
}

/// Whether the image `requested` (a name or a path) is the image `marked` (a path from a marker).
///
/// By name: the marked file name must be the name, optionally followed by `.raw` or slashes; a
/// name with a `_version` matches any version of the same image. By path: directories are
/// ignored, and the file names must agree up to a version suffix (`_...`) on either side.
pub fn image_matches(marked: &str, requested: &str) -> bool {
    let a = last_component(marked);
    if is_valid_image_name(requested) {
        if let Some((stem, _)) = requested.split_once('_') {
            return a.starts_with(stem);
        }
        let Some(rest) = a.strip_prefix(requested) else {
            return false;
        };
        return rest.trim_start_matches('/').is_empty() || rest == ".raw";
    }
    let b = last_component(requested);
    let a_dir_end = a.find('/');
    let b_is_dir = b.contains('/');
    if a_dir_end.is_some() != b_is_dir {
        return false;
    }
    let mut len = a_dir_end.unwrap_or(a.len());
    if a_dir_end.is_some() && b.find('/') != Some(len) {
        return false;
    }
    if let Some(u) = b.find('_') {
        len = u;
    } else if let Some(u) = a.find('_') {
        len = u;
    }
    a.get(..len).is_some_and(|x| b.get(..len) == Some(x))
}

/// Whether the images of a marker (root first, then extensions) are exactly `requested` (same
/// count is not required past the requested ones: portablectl only walks the request).
pub fn marker_matches(marked: &[String], requested: &[String]) -> bool {
    requested.iter().enumerate().all(|(i, req)| {
        marked
            .get(i)
            .is_some_and(|m| image_matches(m.as_str(), req.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prefixes_as_portablectl_derives_them() {
        assert_eq!(prefix_of("foo-test").as_deref(), Some("foo-test"));
        assert_eq!(
            prefix_of("/var/lib/portables/foo-test/").as_deref(),
            Some("foo-test")
        );
        assert_eq!(prefix_of("foo-test_1.raw").as_deref(), Some("foo-test"));
        assert_eq!(prefix_of("/x/app.raw").as_deref(), Some("app"));
        assert_eq!(prefix_of("minimal_0.raw").as_deref(), Some("minimal"));
        assert_eq!(prefix_of("bad:name"), None);
        assert_eq!(prefix_of("_x"), None);
    }

    #[test]
    fn unit_matching() {
        let foo = m(&["foo"]);
        for yes in [
            "foo.service",
            "foo-bar.socket",
            "foo@.service",
            "foo.timer",
            "foo.path",
        ] {
            assert!(unit_matches(yes, &foo), "{yes}");
        }
        for no in ["foobar.service", "foo.mount", "bar.service", "foo"] {
            assert!(!unit_matches(no, &foo), "{no}");
        }
        assert!(unit_matches("anything.target", &[]));
    }

    #[test]
    fn marker_images_match_names_and_paths() {
        assert!(image_matches("/var/lib/portables/foo-test", "foo-test"));
        assert!(image_matches("/var/lib/portables/foo-test.raw", "foo-test"));
        assert!(!image_matches("/var/lib/portables/foo-testx", "foo-test"));
        assert!(image_matches("/a/app1_2.raw", "app1_7"));
        assert!(image_matches("/a/foo-test", "/b/foo-test"));
        assert!(image_matches(
            "/usr/share/minimal_0.raw",
            "/tmp/minimal_1.raw"
        ));
        assert!(image_matches("/a/app1.raw", "/tmp/app1_2.raw"));
        assert!(!image_matches("/a/other", "/b/foo"));
        assert!(marker_matches(&m(&["/a/x", "/e/ext"]), &m(&["/b/x"])));
        assert!(!marker_matches(&m(&["/a/x"]), &m(&["/b/x", "/e/ext"])));
    }

    #[test]
    fn image_names() {
        assert!(is_valid_image_name("foo-test"));
        assert!(!is_valid_image_name("./foo"));
        assert!(!is_valid_image_name(".#tmp"));
        assert_eq!(image_name_of(Path::new("/x/foo_1.raw")), "foo_1");
    }
}
