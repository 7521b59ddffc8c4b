//! Loop devices: attach/configure options, capacity, detach, drop, autoclear, concurrent attaches.

use std::path::Path;

use realms_sys::loopdev::{self, LoopDevice, LoopOptions};

use crate::common::{Scratch, eventually};

fn sys(dev: &LoopDevice, attr: &str) -> String {
    let p = format!("/sys/block/loop{}/{attr}", dev.number());
    std::fs::read_to_string(p).unwrap().trim().to_owned()
}

/// True when loop device `number` is bound to `img`. Regression: it asked whether the number was
/// bound at all, and a test running beside it that attached its own file on the number just
/// freed failed drop_detaches_and_leak_keeps in CI.
fn is_bound(number: u32, img: &Path) -> bool {
    std::fs::read_to_string(format!("/sys/block/loop{number}/loop/backing_file"))
        .is_ok_and(|backing| Path::new(backing.trim_end()) == img)
}

#[test]
fn attach_resize_and_detach() {
    let s = Scratch::new("loop");
    let img = s.sparse_file("a.img", 16 << 20);
    let dev = LoopDevice::attach(&img, &LoopOptions::default()).unwrap();
    assert!(dev.path().exists());
    assert_eq!(dev.backing_file().unwrap(), img);
    assert_eq!(
        loopdev::find_by_backing_file(&img).unwrap(),
        [dev.path().to_owned()]
    );
    assert_eq!(sys(&dev, "size"), (16u64 << 20 >> 9).to_string());
    assert_eq!(sys(&dev, "ro"), "0");

    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    dev.set_capacity().unwrap();
    assert_eq!(sys(&dev, "size"), (32u64 << 20 >> 9).to_string());

    let number = dev.number();
    dev.detach().unwrap();
    assert!(!is_bound(number, &img));
    assert!(loopdev::find_by_backing_file(&img).unwrap().is_empty());
}

#[test]
fn options_offset_limit_read_only() {
    let s = Scratch::new("loop-opts");
    let img = s.sparse_file("b.img", 16 << 20);
    let opts = LoopOptions {
        read_only: true,
        offset: 1 << 20,
        size_limit: 4 << 20,
        ..LoopOptions::default()
    };
    let dev = LoopDevice::attach(&img, &opts).unwrap();
    assert_eq!(sys(&dev, "ro"), "1");
    assert_eq!(sys(&dev, "size"), (4u64 << 20 >> 9).to_string());
    assert_eq!(sys(&dev, "loop/offset"), (1u64 << 20).to_string());
    assert_eq!(sys(&dev, "loop/autoclear"), "0");
}

#[test]
fn drop_detaches_and_leak_keeps() {
    let s = Scratch::new("loop-drop");
    let img = s.sparse_file("c.img", 8 << 20);
    let dev = LoopDevice::attach(&img, &LoopOptions::default()).unwrap();
    let number = dev.number();
    drop(dev);
    assert!(!is_bound(number, &img));

    let dev = LoopDevice::attach(&img, &LoopOptions::default()).unwrap();
    let number = dev.number();
    let path = dev.leak();
    assert!(is_bound(number, &img));
    loopdev::detach_device(&path).unwrap();
    assert!(!is_bound(number, &img));
}

#[test]
fn autoclear_releases_when_closed() {
    let s = Scratch::new("loop-auto");
    let img = s.sparse_file("d.img", 8 << 20);
    let dev = LoopDevice::attach(
        &img,
        &LoopOptions {
            autoclear: true,
            ..LoopOptions::default()
        },
    )
    .unwrap();
    let number = dev.number();
    assert_eq!(sys(&dev, "loop/autoclear"), "1");
    drop(dev);
    eventually("autoclear loop device released", || !is_bound(number, &img));
}

#[test]
fn concurrent_attaches_get_distinct_devices() {
    let s = Scratch::new("loop-par");
    let imgs: Vec<_> = (0..6)
        .map(|i| s.sparse_file(&format!("{i}.img"), 4 << 20))
        .collect();
    let devs: Vec<LoopDevice> = std::thread::scope(|scope| {
        let handles: Vec<_> = imgs
            .iter()
            .map(|img| scope.spawn(move || LoopDevice::attach(img, &LoopOptions::default())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    let mut paths: Vec<_> = devs.iter().map(|d| d.path().to_owned()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 6);
    for (dev, img) in devs.iter().zip(&imgs) {
        assert_eq!(&dev.backing_file().unwrap(), img);
    }
}

#[test]
fn missing_backing_file_names_it() {
    let s = Scratch::new("loop-missing");
    let err = LoopDevice::attach(s.path().join("nope.img"), &LoopOptions::default()).unwrap_err();
    assert!(err.is_not_found());
    assert!(err.to_string().contains("nope.img"), "{err}");
}

#[test]
fn direct_io_switches_on_a_device_in_use() {
    let s = Scratch::new("loop-dio");
    let img = s.sparse_file("d.img", 16 << 20);
    let dev = LoopDevice::attach(&img, &LoopOptions::default()).unwrap();
    assert_eq!(sys(&dev, "loop/dio"), "0");
    // Held open as a file system would hold it.
    let _user = std::fs::File::open(dev.path()).unwrap();
    loopdev::set_direct_io_of(dev.path(), true).unwrap();
    assert_eq!(sys(&dev, "loop/dio"), "1");
    loopdev::set_direct_io_of(dev.path(), false).unwrap();
    assert_eq!(sys(&dev, "loop/dio"), "0");
}
