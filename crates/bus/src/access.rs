//! Who may change realms: root, and members of the admin group (from /etc/group, the caller's
//! primary group included).

use std::fs;

/// True when user `uid` may call mutating methods.
pub fn may_change(uid: u32, admin_group: Option<&str>) -> bool {
    if uid == 0 {
        return true;
    }
    let Some(group) = admin_group else {
        return false;
    };
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let groups = fs::read_to_string("/etc/group").unwrap_or_default();
    in_group(uid, group, &passwd, &groups)
}

/// True when `uid` is a member of `group` by these passwd and group files.
pub fn in_group(uid: u32, group: &str, passwd: &str, groups: &str) -> bool {
    let user = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[2].parse() == Ok(uid)).then(|| (f[0].to_string(), f[3].to_string()))
    });
    let Some((name, primary)) = user else {
        return false;
    };
    groups.lines().any(|l| {
        let f: Vec<&str> = l.split(':').collect();
        f.len() > 3 && f[0] == group && (f[2] == primary || f[3].split(',').any(|m| m == name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_primary_group_and_nobody_else() {
        let passwd = "root:x:0:0::/root:/bin/sh\nann:x:1000:1000::/home/ann:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\ncid:x:1002:50::/:/bin/sh\n";
        let groups = "realms:x:50:ann\nann:x:1000:\nbob:x:1001:\n";
        assert!(in_group(1000, "realms", passwd, groups));
        assert!(in_group(1002, "realms", passwd, groups), "primary group");
        assert!(!in_group(1001, "realms", passwd, groups));
        assert!(!in_group(4242, "realms", passwd, groups), "no such user");
        assert!(may_change(0, None));
        assert!(!may_change(65534, None));
    }
}
