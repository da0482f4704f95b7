//! A System V shared-memory segment the X server writes screen images into (MIT-SHM), so that a
//! 4K frame (33 MB) is not copied through the socket into a buffer allocated, faulted in and
//! freed again for every frame: those page faults and that copy were a third of sharing a 4K
//! screen. The only unsafe code of the devices: creating, mapping and reading the segment.
#![allow(unsafe_code)]

use std::io;
use std::ptr::NonNull;

/// A segment mapped here and attached by the X server, `len` bytes.
pub struct SharedImage {
    seg: xcb::shm::Seg,
    addr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping belongs to this value alone (nothing else in the process has its address),
// and the X server writes into it only while a request made through `&mut self` is in flight.
unsafe impl Send for SharedImage {}

impl SharedImage {
    /// A segment of `len` bytes, attached by the server behind `conn` (which must have the
    /// MIT-SHM extension active).
    pub fn attach(conn: &xcb::Connection, len: usize) -> Result<Self, String> {
        let failed = |what: &str| format!("{what}: {}", io::Error::last_os_error());
        // SAFETY: shmget takes no pointers.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o600) };
        if id < 0 {
            return Err(failed("shmget"));
        }
        // SAFETY: `id` is the segment just created; a null address lets the kernel place it.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        let mapped = if addr as isize == -1 {
            Err(failed("shmat"))
        } else {
            NonNull::new(addr.cast::<u8>()).ok_or_else(|| "shmat gave a null address".to_owned())
        };
        let attached = mapped.and_then(|addr| {
            let seg = conn.generate_id();
            let cookie = conn.send_request_checked(&xcb::shm::Attach {
                shmseg: seg,
                shmid: id.unsigned_abs(),
                read_only: false,
            });
            match conn.check_request(cookie) {
                Ok(()) => Ok(Self { seg, addr, len }),
                Err(err) => {
                    // SAFETY: `addr` is the mapping made above and nothing refers to it.
                    unsafe { libc::shmdt(addr.as_ptr().cast()) };
                    Err(format!("the X server did not attach the segment: {err}"))
                }
            }
        });
        // The segment goes away once the last attachment does (ours when this value drops, the
        // server's when the connection closes), and from now on no other process can attach it.
        // SAFETY: IPC_RMID reads no buffer; a null one is allowed.
        unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        attached
    }

    /// Has the server put the `width` x `height` region of `drawable` at `(x, y)` into the segment
    /// (ZPixmap), and returns its bytes.
    pub fn get_image(
        &mut self,
        conn: &xcb::Connection,
        drawable: xcb::x::Drawable,
        (x, y, width, height): (i16, i16, u16, u16),
    ) -> Result<&[u8], String> {
        let cookie = conn.send_request(&xcb::shm::GetImage {
            drawable,
            x,
            y,
            width,
            height,
            plane_mask: u32::MAX,
            format: xcb::x::ImageFormat::ZPixmap as u8,
            shmseg: self.seg,
            offset: 0,
        });
        let reply = conn.wait_for_reply(cookie).map_err(|e| e.to_string())?;
        let size = reply.size() as usize;
        if size > self.len {
            return Err(format!(
                "the X server wrote {size} bytes into a segment of {}",
                self.len
            ));
        }
        // SAFETY: `addr` maps `len` >= `size` bytes for as long as `self` lives. The server wrote
        // them before its reply and writes again only for the next request, which needs
        // `&mut self`, so not while the returned borrow lives.
        Ok(unsafe { std::slice::from_raw_parts(self.addr.as_ptr(), size) })
    }
}

impl Drop for SharedImage {
    fn drop(&mut self) {
        // SAFETY: `addr` is our mapping, and no borrow of it outlives `&mut self`.
        unsafe { libc::shmdt(self.addr.as_ptr().cast()) };
    }
}
