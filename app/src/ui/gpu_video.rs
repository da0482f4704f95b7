//! Video drawn by the GPU: a `VideoSlot`'s I420 planes go up as three one-channel textures and a
//! shader converts them to RGB while drawing (BT.601 limited range, the same integer coefficients
//! as `confab_media::convert::i420_to_rgba`), inside an egui paint callback for wgpu or glow.
//! `install` picks the path once per window; where neither callback is possible the CPU path draws.

// glow is a thin binding over the C OpenGL API: every call is `unsafe`. Each block says why it holds.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use eframe::egui_glow;
use eframe::egui_wgpu::{self, wgpu};
use eframe::glow::{self, HasContext as _};

use super::video::VideoSlot;

/// How the window turns frames into pixels; chosen once, in `install`.
#[derive(Clone, Default)]
pub enum VideoPath {
    /// RGBA converted on the CPU and drawn as an egui texture (no renderer callback available).
    #[default]
    Cpu,
    /// Planes uploaded with `write_texture`, converted in a WGSL shader.
    Wgpu,
    /// Planes uploaded with `tex_sub_image_2d`, converted in a GLSL shader.
    Glow(Arc<GlVideo>),
}

fn path_id() -> egui::Id {
    egui::Id::unique("confab-video-path")
}

/// Chooses the video path for this window from the renderer eframe created, and sets it up.
/// `CONFAB_VIDEO=cpu` forces the CPU path (to compare, or where a driver misdraws).
pub fn install(cc: &eframe::CreationContext<'_>) {
    let forced_cpu = std::env::var("CONFAB_VIDEO").as_deref() == Ok("cpu");
    let path = if forced_cpu {
        VideoPath::Cpu
    } else if let Some(state) = &cc.wgpu_render_state {
        install_wgpu(state);
        VideoPath::Wgpu
    } else if let Some(gl) = &cc.gl {
        GlVideo::new(gl).map_or(VideoPath::Cpu, |v| VideoPath::Glow(Arc::new(v)))
    } else {
        VideoPath::Cpu
    };
    let name = match &path {
        VideoPath::Cpu => "the CPU (RGBA textures)",
        VideoPath::Wgpu => "a wgpu shader",
        VideoPath::Glow(_) => "an OpenGL shader",
    };
    tracing::info!("video converted by {name}");
    set_path(&cc.egui_ctx, path);
}

/// Registers the wgpu pipeline with a renderer (the app's, or a test's offscreen one).
pub fn install_wgpu(state: &egui_wgpu::RenderState) {
    let video = WgpuVideo::new(&state.device, state.target_format);
    state.renderer.write().callback_resources.insert(video);
}

pub fn set_path(ctx: &egui::Context, path: VideoPath) {
    ctx.data_mut(|d| d.insert_temp(path_id(), path));
}

pub fn path(ctx: &egui::Context) -> VideoPath {
    ctx.data(|d| d.get_temp(path_id())).unwrap_or_default()
}

/// A paint callback drawing `slot`'s newest frame into `rect`, or `None` on the CPU path.
pub fn paint_callback(
    path: &VideoPath,
    slot: &Arc<VideoSlot>,
    rect: egui::Rect,
) -> Option<egui::PaintCallback> {
    match path {
        VideoPath::Cpu => None,
        VideoPath::Wgpu => Some(egui_wgpu::Callback::new_paint_callback(
            rect,
            WgpuCallback { slot: slot.clone() },
        )),
        VideoPath::Glow(gl_video) => {
            let (gl_video, slot) = (gl_video.clone(), slot.clone());
            Some(egui::PaintCallback {
                rect,
                callback: Arc::new(egui_glow::CallbackFn::new(move |_info, painter| {
                    gl_video.paint(painter.gl(), &slot);
                })),
            })
        }
    }
}

/// A slot's identity while it lives (its address); `Weak` tells when it is gone.
fn slot_key(slot: &Arc<VideoSlot>) -> usize {
    Arc::as_ptr(slot) as usize
}

const WGSL: &str = r"
struct VsOut {
    @builtin(position) pos: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

// A strip of 4 vertices covering the viewport, which egui sets to the callback's rect.
@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> VsOut {
    let uv = vec2<f32>(f32(i & 1u), f32(i >> 1u));
    var out: VsOut;
    out.pos = vec4<f32>(uv.x * 2.0 - 1.0, 1.0 - uv.y * 2.0, 0.0, 1.0);
    out.uv = uv;
    return out;
}

@group(0) @binding(0) var y_plane: texture_2d<f32>;
@group(0) @binding(1) var u_plane: texture_2d<f32>;
@group(0) @binding(2) var v_plane: texture_2d<f32>;
@group(0) @binding(3) var luma: sampler;
// Chroma nearest, like the CPU path (each sample covers its 2x2 block); linear chroma costs a
// software rasterizer a tenth of a core more at 720p30 and gains no sharpness.
@group(0) @binding(4) var chroma: sampler;

// BT.601 limited range, the coefficients of confab_media::convert::i420_to_rgba.
fn rgb(uv: vec2<f32>) -> vec3<f32> {
    let y = (textureSample(y_plane, luma, uv).r * 255.0 - 16.0) * 298.0;
    let u = textureSample(u_plane, chroma, uv).r * 255.0 - 128.0;
    let v = textureSample(v_plane, chroma, uv).r * 255.0 - 128.0;
    let c = vec3<f32>(y + 409.0 * v, y - 100.0 * u - 208.0 * v, y + 516.0 * u);
    return clamp(c / (256.0 * 255.0), vec3<f32>(0.0), vec3<f32>(1.0));
}

@fragment
fn fs_gamma(in: VsOut) -> @location(0) vec4<f32> {
    return vec4<f32>(rgb(in.uv), 1.0);
}

// For an sRGB target, which encodes what it is given.
@fragment
fn fs_linear(in: VsOut) -> @location(0) vec4<f32> {
    let c = rgb(in.uv);
    let lower = c / 12.92;
    let higher = pow((c + vec3<f32>(0.055)) / 1.055, vec3<f32>(2.4));
    return vec4<f32>(select(higher, lower, c < vec3<f32>(0.04045)), 1.0);
}
";

/// The wgpu pipeline and each slot's plane textures (kept in egui's callback resources).
struct WgpuVideo {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    /// Luma (linear), chroma (nearest).
    samplers: [wgpu::Sampler; 2],
    slots: HashMap<usize, (Weak<VideoSlot>, WgpuPlanes)>,
}

struct WgpuPlanes {
    size: [u32; 2],
    textures: [wgpu::Texture; 3],
    bind_group: wgpu::BindGroup,
}

impl WgpuVideo {
    fn new(device: &wgpu::Device, target_format: wgpu::TextureFormat) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("confab-i420"),
            source: wgpu::ShaderSource::Wgsl(WGSL.into()),
        });
        let plane = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: true },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("confab-i420"),
            entries: &[
                plane(0),
                plane(1),
                plane(2),
                wgpu::BindGroupLayoutEntry {
                    binding: 3,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 4,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("confab-i420"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        // eframe's render pass: no depth buffer, no multisampling (NativeOptions' defaults,
        // which `ui::run` keeps).
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("confab-i420"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                buffers: &[],
                compilation_options: wgpu::PipelineCompilationOptions::default(),
            },
            primitive: wgpu::PrimitiveState {
                topology: wgpu::PrimitiveTopology::TriangleStrip,
                ..Default::default()
            },
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some(if target_format.is_srgb() {
                    "fs_linear"
                } else {
                    "fs_gamma"
                }),
                targets: &[Some(wgpu::ColorTargetState {
                    format: target_format,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
                compilation_options: wgpu::PipelineCompilationOptions::default(),
            }),
            multiview_mask: None,
            cache: None,
        });
        let luma = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("confab-i420-luma"),
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        });
        let chroma = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("confab-i420-chroma"),
            ..Default::default()
        });
        Self {
            pipeline,
            layout,
            samplers: [luma, chroma],
            slots: HashMap::new(),
        }
    }

    fn planes(&self, device: &wgpu::Device, [w, h]: [u32; 2]) -> WgpuPlanes {
        let texture = |width, height| {
            device.create_texture(&wgpu::TextureDescriptor {
                label: Some("confab-i420-plane"),
                size: wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::R8Unorm,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            })
        };
        let textures = [texture(w, h), texture(w / 2, h / 2), texture(w / 2, h / 2)];
        let views = textures
            .each_ref()
            .map(|t| t.create_view(&wgpu::TextureViewDescriptor::default()));
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("confab-i420"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::TextureView(&views[0]),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(&views[1]),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::TextureView(&views[2]),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: wgpu::BindingResource::Sampler(&self.samplers[0]),
                },
                wgpu::BindGroupEntry {
                    binding: 4,
                    resource: wgpu::BindingResource::Sampler(&self.samplers[1]),
                },
            ],
        });
        WgpuPlanes {
            size: [w, h],
            textures,
            bind_group,
        }
    }
}

struct WgpuCallback {
    slot: Arc<VideoSlot>,
}

impl egui_wgpu::CallbackTrait for WgpuCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        let Some(video) = resources.get_mut::<WgpuVideo>() else {
            return Vec::new();
        };
        video.slots.retain(|_, (slot, _)| slot.strong_count() > 0);
        let key = slot_key(&self.slot);
        self.slot.with_frame(|frame, fresh| {
            let size = [frame.width, frame.height];
            let stale = video.slots.get(&key).is_none_or(|(_, p)| p.size != size);
            if stale {
                let planes = video.planes(device, size);
                video
                    .slots
                    .insert(key, (Arc::downgrade(&self.slot), planes));
            } else if !fresh {
                return;
            }
            let (_, planes) = &video.slots[&key];
            let (w, h) = (frame.width, frame.height);
            for (texture, data, (pw, ph)) in [
                (&planes.textures[0], frame.y(), (w, h)),
                (&planes.textures[1], frame.u(), (w / 2, h / 2)),
                (&planes.textures[2], frame.v(), (w / 2, h / 2)),
            ] {
                queue.write_texture(
                    texture.as_image_copy(),
                    data,
                    wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(pw),
                        rows_per_image: Some(ph),
                    },
                    wgpu::Extent3d {
                        width: pw,
                        height: ph,
                        depth_or_array_layers: 1,
                    },
                );
            }
        });
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        let Some(video) = resources.get::<WgpuVideo>() else {
            return;
        };
        if let Some((_, planes)) = video.slots.get(&slot_key(&self.slot)) {
            render_pass.set_pipeline(&video.pipeline);
            render_pass.set_bind_group(0, &planes.bind_group, &[]);
            render_pass.draw(0..4, 0..1);
        }
    }
}

/// The GLSL program and each slot's plane textures, for the glow renderer.
pub struct GlVideo {
    state: Mutex<GlState>,
}

struct GlState {
    program: glow::Program,
    slots: HashMap<usize, (Weak<VideoSlot>, GlPlanes)>,
}

struct GlPlanes {
    size: [u32; 2],
    textures: [glow::Texture; 3],
}

const GLSL_VERTEX: &str = "
out vec2 v_uv;
void main() {
    // A strip of 4 vertices covering the viewport, which egui sets to the callback's rect.
    vec2 uv = vec2(float(gl_VertexID & 1), float(gl_VertexID >> 1));
    gl_Position = vec4(uv.x * 2.0 - 1.0, 1.0 - uv.y * 2.0, 0.0, 1.0);
    v_uv = uv;
}
";

const GLSL_FRAGMENT: &str = "
uniform sampler2D y_plane;
uniform sampler2D u_plane;
uniform sampler2D v_plane;
in vec2 v_uv;
out vec4 color;
void main() {
    // BT.601 limited range, the coefficients of confab_media::convert::i420_to_rgba.
    float y = (texture(y_plane, v_uv).r * 255.0 - 16.0) * 298.0;
    float u = texture(u_plane, v_uv).r * 255.0 - 128.0;
    float v = texture(v_plane, v_uv).r * 255.0 - 128.0;
    vec3 c = vec3(y + 409.0 * v, y - 100.0 * u - 208.0 * v, y + 516.0 * u);
    color = vec4(clamp(c / (256.0 * 255.0), 0.0, 1.0), 1.0);
}
";

impl GlVideo {
    /// The shader program, or `None` where the context is older than GL 3.1 / GLES 3.0 (one-channel
    /// textures and `gl_VertexID`), which then draws on the CPU path.
    fn new(gl: &glow::Context) -> Option<Self> {
        let header = match egui_glow::ShaderVersion::get(gl) {
            egui_glow::ShaderVersion::Gl140 => "#version 140\n",
            egui_glow::ShaderVersion::Es300 => "#version 300 es\nprecision highp float;\n",
            other => {
                tracing::info!(
                    ?other,
                    "OpenGL too old for the video shader; video converted on the CPU"
                );
                return None;
            }
        };
        // SAFETY: `gl` is eframe's current context on this (the UI) thread; every object made
        // here is checked before use and deleted on failure.
        let program = unsafe {
            let program = gl.create_program().ok()?;
            let mut shaders = Vec::new();
            for (kind, source) in [
                (glow::VERTEX_SHADER, GLSL_VERTEX),
                (glow::FRAGMENT_SHADER, GLSL_FRAGMENT),
            ] {
                let shader = gl.create_shader(kind).ok()?;
                gl.shader_source(shader, &format!("{header}{source}"));
                gl.compile_shader(shader);
                if !gl.get_shader_compile_status(shader) {
                    tracing::warn!(log = %gl.get_shader_info_log(shader), "video shader did not compile");
                    gl.delete_shader(shader);
                    gl.delete_program(program);
                    return None;
                }
                gl.attach_shader(program, shader);
                shaders.push(shader);
            }
            gl.link_program(program);
            for shader in shaders {
                gl.detach_shader(program, shader);
                gl.delete_shader(shader);
            }
            if !gl.get_program_link_status(program) {
                tracing::warn!(log = %gl.get_program_info_log(program), "video shader did not link");
                gl.delete_program(program);
                return None;
            }
            gl.use_program(Some(program));
            for (unit, name) in ["y_plane", "u_plane", "v_plane"].iter().enumerate() {
                let location = gl.get_uniform_location(program, name);
                gl.uniform_1_i32(location.as_ref(), unit as i32);
            }
            gl.use_program(None);
            program
        };
        Some(Self {
            state: Mutex::new(GlState {
                program,
                slots: HashMap::new(),
            }),
        })
    }

    /// Uploads `slot`'s frame if it is new and draws it into the viewport egui set.
    fn paint(&self, gl: &glow::Context, slot: &Arc<VideoSlot>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *state;
        state.slots.retain(|_, (slot, planes)| {
            let alive = slot.strong_count() > 0;
            if !alive {
                // SAFETY: the textures were made on this context, and nothing else holds them.
                unsafe { delete_textures(gl, &planes.textures) };
            }
            alive
        });
        let key = slot_key(slot);
        slot.with_frame(|frame, fresh| {
            let size = [frame.width, frame.height];
            let stale = state.slots.get(&key).is_none_or(|(_, p)| p.size != size);
            if stale {
                if let Some((_, old)) = state.slots.remove(&key) {
                    // SAFETY: as above, textures of this context that only this map holds.
                    unsafe { delete_textures(gl, &old.textures) };
                }
                match gl_planes(gl, size) {
                    Some(planes) => {
                        state.slots.insert(key, (Arc::downgrade(slot), planes));
                    }
                    None => return,
                }
            } else if !fresh {
                return;
            }
            let (_, planes) = &state.slots[&key];
            let (w, h) = (frame.width as i32, frame.height as i32);
            for (texture, data, (pw, ph)) in [
                (planes.textures[0], frame.y(), (w, h)),
                (planes.textures[1], frame.u(), (w / 2, h / 2)),
                (planes.textures[2], frame.v(), (w / 2, h / 2)),
            ] {
                // SAFETY: the texture is `pw` x `ph` R8 (made by `gl_planes` for this size) and
                // `data` holds exactly that many bytes (the I420 plane), rows packed (alignment 1).
                unsafe {
                    gl.bind_texture(glow::TEXTURE_2D, Some(texture));
                    gl.pixel_store_i32(glow::UNPACK_ALIGNMENT, 1);
                    gl.tex_sub_image_2d(
                        glow::TEXTURE_2D,
                        0,
                        0,
                        0,
                        pw,
                        ph,
                        glow::RED,
                        glow::UNSIGNED_BYTE,
                        glow::PixelUnpackData::Slice(Some(data)),
                    );
                }
            }
        });
        let Some((_, planes)) = state.slots.get(&key) else {
            return;
        };
        // SAFETY: program and textures are this context's; egui_glow restores its own state
        // (program, texture unit 0, blending, viewport) after every callback.
        unsafe {
            gl.use_program(Some(state.program));
            for (unit, texture) in planes.textures.iter().enumerate() {
                gl.active_texture(glow::TEXTURE0 + unit as u32);
                gl.bind_texture(glow::TEXTURE_2D, Some(*texture));
            }
            gl.active_texture(glow::TEXTURE0);
            gl.draw_arrays(glow::TRIANGLE_STRIP, 0, 4);
        }
    }
}

/// # Safety
/// The textures must be `gl`'s and used by nothing after this.
unsafe fn delete_textures(gl: &glow::Context, textures: &[glow::Texture]) {
    for &texture in textures {
        // SAFETY: the caller's promise.
        unsafe { gl.delete_texture(texture) };
    }
}

/// Three R8 textures for a `w` x `h` I420 frame, clamped at the edges.
fn gl_planes(gl: &glow::Context, [w, h]: [u32; 2]) -> Option<GlPlanes> {
    let (w, h) = (w as i32, h as i32);
    let mut textures = Vec::with_capacity(3);
    for (pw, ph) in [(w, h), (w / 2, h / 2), (w / 2, h / 2)] {
        // SAFETY: a fresh texture of this context, allocated (no data) at its size.
        unsafe {
            let Ok(texture) = gl.create_texture() else {
                for t in textures {
                    gl.delete_texture(t);
                }
                return None;
            };
            gl.bind_texture(glow::TEXTURE_2D, Some(texture));
            // Chroma nearest, like the CPU path (each sample covers its 2x2 block); linear
            // chroma costs llvmpipe a tenth of a core more at 720p30 and gains no sharpness.
            let f = if pw == w { glow::LINEAR } else { glow::NEAREST };
            for (param, value) in [
                (glow::TEXTURE_MIN_FILTER, f),
                (glow::TEXTURE_MAG_FILTER, f),
                (glow::TEXTURE_WRAP_S, glow::CLAMP_TO_EDGE),
                (glow::TEXTURE_WRAP_T, glow::CLAMP_TO_EDGE),
            ] {
                gl.tex_parameter_i32(glow::TEXTURE_2D, param, value as i32);
            }
            gl.tex_image_2d(
                glow::TEXTURE_2D,
                0,
                glow::R8 as i32,
                pw,
                ph,
                0,
                glow::RED,
                glow::UNSIGNED_BYTE,
                glow::PixelUnpackData::Slice(None),
            );
            textures.push(texture);
        }
    }
    let textures = <[glow::Texture; 3]>::try_from(textures)
        .expect("invariant: one texture per plane was pushed, three planes");
    Some(GlPlanes {
        size: [w as u32, h as u32],
        textures,
    })
}

#[cfg(test)]
mod tests {
    use super::super::video::VideoTexture;
    use super::*;
    use confab_media::convert::i420_to_rgba;
    use confab_media::{pattern, VideoFrame};
    use egui_kittest::wgpu::{create_render_state, default_wgpu_setup, WgpuTestRenderer};

    /// `frame` drawn 1:1 at the window's top left by `path` (kittest's offscreen wgpu, software
    /// here), as RGBA pixels.
    fn draw(frame: &VideoFrame, gpu: bool) -> Vec<u8> {
        let state = create_render_state(
            default_wgpu_setup(),
            egui_wgpu::RendererOptions::PREDICTABLE,
        );
        install_wgpu(&state);
        let slot = VideoSlot::new(None);
        slot.put(frame);
        let (w, h) = (frame.width as usize, frame.height as usize);
        let rect = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(w as f32, h as f32));
        let path = if gpu { VideoPath::Wgpu } else { VideoPath::Cpu };
        let mut texture: Option<VideoTexture> = None;
        let mut harness = egui_kittest::Harness::builder()
            .with_size(egui::vec2(w as f32 + 16.0, h as f32 + 16.0))
            .with_pixels_per_point(1.0)
            .renderer(WgpuTestRenderer::from_render_state(state))
            .build_ui(move |ui| {
                set_path(ui.ctx(), path.clone());
                slot.upload(ui.ctx(), "video", &mut texture);
                let layer = egui::LayerId::new(egui::Order::Foreground, egui::Id::unique("video"));
                let painter = ui.ctx().layer_painter(layer);
                let texture = texture.as_ref().expect("invariant: the slot has a frame");
                assert_eq!(
                    matches!(texture, VideoTexture::Gpu(..)),
                    gpu,
                    "the path asked for"
                );
                texture.paint(&painter, rect);
            });
        harness.run();
        let shot = harness
            .render()
            .expect("kittest renders with software wgpu");
        let mut pixels = Vec::with_capacity(w * h * 4);
        for y in 0..h {
            for x in 0..w {
                pixels.extend_from_slice(&shot.get_pixel(x as u32, y as u32).0);
            }
        }
        pixels
    }

    /// PSNR (dB) of the RGB channels of two RGBA images of the same size.
    fn psnr_rgb(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let (mut sum, mut n) = (0.0, 0usize);
        for (pa, pb) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
            for c in 0..3 {
                let d = f64::from(pa[c]) - f64::from(pb[c]);
                sum += d * d;
                n += 1;
            }
        }
        let mse = sum / n as f64;
        if mse == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (255.0 * 255.0 / mse).log10()
        }
    }

    fn cpu_rgba(frame: &VideoFrame) -> Vec<u8> {
        let mut rgba = Vec::new();
        i420_to_rgba(frame, &mut rgba);
        rgba
    }

    /// The frame with its U and V planes exchanged: what a shader reading them swapped shows.
    fn swapped_chroma(frame: &VideoFrame) -> VideoFrame {
        let mut swapped = frame.clone();
        let (u, v) = (frame.u().to_vec(), frame.v().to_vec());
        let (_, su, sv) = swapped.planes_mut();
        su.copy_from_slice(&v);
        sv.copy_from_slice(&u);
        swapped
    }

    /// The frame with every row read one pixel further along the plane (a stride off by one).
    fn shifted_rows(frame: &VideoFrame) -> VideoFrame {
        let mut shifted = frame.clone();
        let w = frame.width as usize;
        let y = frame.y();
        let (sy, _, _) = shifted.planes_mut();
        for (row, out) in sy.chunks_exact_mut(w).enumerate() {
            let start = (row * (w + 1)).min(y.len() - w);
            out.copy_from_slice(&y[start..start + w]);
        }
        shifted
    }

    const MIN_PSNR_DB: f64 = 35.0;

    fn check(width: u32, height: u32) {
        let frame = pattern::render(37, width, height, 1_234_567);
        let reference = cpu_rgba(&frame);
        let cpu = psnr_rgb(&draw(&frame, false), &reference);
        let gpu = psnr_rgb(&draw(&frame, true), &reference);
        println!("{width}x{height}: CPU path {cpu:.1} dB, shader path {gpu:.1} dB");
        assert!(
            cpu >= MIN_PSNR_DB,
            "{width}x{height}: the CPU path draws its conversion ({cpu:.1} dB)"
        );
        assert!(
            gpu >= MIN_PSNR_DB,
            "{width}x{height}: the shader draws the CPU path's picture ({gpu:.1} dB)"
        );
        // The comparison can tell the mistakes a shader would make.
        for (mistake, wrong) in [
            ("U and V swapped", swapped_chroma(&frame)),
            ("rows misread", shifted_rows(&frame)),
        ] {
            let db = psnr_rgb(&cpu_rgba(&wrong), &reference);
            assert!(
                db < MIN_PSNR_DB,
                "{width}x{height}: {mistake} scores {db:.1} dB"
            );
        }
    }

    #[test]
    fn the_shader_draws_what_the_cpu_path_draws() {
        check(640, 360);
        // Chroma rows of 165 bytes: nothing may assume rows padded to 4 bytes.
        check(330, 186);
    }
}
