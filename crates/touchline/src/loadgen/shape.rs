//! The request shapes a load run sends, and the mix of them.

use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request};
use rand::rngs::SmallRng;
use rand::Rng;

use super::population::{Pools, Population};
use super::template::Filler;

/// One kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// `POST /v1/batch` with `--batch` native records.
    Batch,
    /// `POST /v1/events` with one record.
    Single,
    /// `POST /v1/track`, `/v1/page`, `/v1/identify` in turn, one Segment message each.
    Segment,
    /// `GET /p.gif?k=…` an ad server's impression pixel.
    Pixel,
    /// `GET /l/{code}` a short-link redirect.
    Redirect,
}

impl Shape {
    pub const ALL: [Shape; 5] = [Shape::Batch, Shape::Single, Shape::Segment, Shape::Pixel, Shape::Redirect];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Batch => "batch",
            Shape::Single => "single",
            Shape::Segment => "segment",
            Shape::Pixel => "pixel",
            Shape::Redirect => "redirect",
        }
    }
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Shape::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown shape `{s}`: use one of {}", Shape::ALL.map(Shape::name).join(", ")))
    }
}

/// Shapes with weights, e.g. `batch`, or `single=2,pixel=5,redirect=1`, or `realistic`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix(pub Vec<(Shape, u32)>);

impl Mix {
    /// What a marketing site's traffic looks like to the edge: mostly pixels and SDK messages,
    /// some server batches and redirects.
    pub fn realistic() -> Mix {
        Mix(vec![(Shape::Pixel, 4), (Shape::Segment, 3), (Shape::Single, 1), (Shape::Batch, 1), (Shape::Redirect, 1)])
    }

    pub fn has(&self, shape: Shape) -> bool {
        self.0.iter().any(|(s, w)| *s == shape && *w > 0)
    }

    fn total(&self) -> u32 {
        self.0.iter().map(|(_, w)| w).sum()
    }

    fn pick(&self, rng: &mut SmallRng) -> Shape {
        let mut roll = rng.random_range(0..self.total().max(1));
        for (shape, weight) in &self.0 {
            if roll < *weight {
                return *shape;
            }
            roll -= weight;
        }
        self.0.first().map_or(Shape::Batch, |(s, _)| *s)
    }

    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(s, w)| if self.0.len() == 1 { s.name().to_owned() } else { format!("{}={w}", s.name()) })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "realistic" {
            return Ok(Mix::realistic());
        }
        let mut parts = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let weight: u32 = weight.parse().map_err(|_| format!("weight of `{name}` must be a whole number, not `{weight}`"))?;
            parts.push((name.parse()?, weight));
        }
        if parts.iter().all(|(_, w)| *w == 0) {
            return Err("the mix needs at least one shape with a weight above 0".into());
        }
        Ok(Mix(parts))
    }
}

/// A request ready to send, and what counts as its success.
pub struct Prepared {
    pub shape: Shape,
    pub method: Method,
    pub path: String,
    pub body: Bytes,
    pub records: usize,
    authorization: Option<HeaderValue>,
    host: HeaderValue,
    user_agent: &'static str,
}

impl Prepared {
    pub fn request(&self) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(self.method.clone()).uri(self.path.as_str()).header(HOST, self.host.clone());
        b = b.header(USER_AGENT, self.user_agent);
        if let Some(a) = &self.authorization {
            b = b.header(AUTHORIZATION, a.clone());
        }
        if self.method == Method::POST {
            b = b.header(CONTENT_TYPE, "application/json");
        }
        b.body(Full::new(self.body.clone())).unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }

    /// 2xx for ingestion and pixels (a pixel not stored is reported as status 0), 302 for a
    /// redirect.
    pub fn expects(&self, status: u16) -> bool {
        match self.shape {
            Shape::Redirect => status == 302,
            _ => (200..300).contains(&status),
        }
    }
}

/// Builds the requests of one connection from the run's shared templates.
pub struct RequestMaker {
    mix: Mix,
    pools: Arc<Pools>,
    batch: usize,
    link_codes: Arc<Vec<String>>,
    rng: SmallRng,
    filler: Filler,
    authorization: HeaderValue,
    host: HeaderValue,
    made: u64,
}

/// What every connection of a run shares.
pub struct MakerSettings {
    pub mix: Mix,
    pub pools: Arc<Pools>,
    pub batch: usize,
    pub write_key: String,
    pub link_codes: Arc<Vec<String>>,
    pub host: String,
    pub identities: u64,
}

impl RequestMaker {
    pub fn new(settings: &MakerSettings, connection: u64, rng: SmallRng) -> Self {
        let authorization =
            HeaderValue::from_str(&format!("Bearer {}", settings.write_key)).unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        let host = HeaderValue::from_str(&settings.host).unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        RequestMaker {
            mix: settings.mix.clone(),
            pools: settings.pools.clone(),
            batch: settings.batch,
            link_codes: settings.link_codes.clone(),
            rng,
            filler: Filler::new(connection, settings.identities),
            authorization,
            host,
            made: 0,
        }
    }

    fn pick<'a, T>(rng: &mut SmallRng, pool: &'a [T]) -> &'a T {
        &pool[rng.random_range(0..pool.len())]
    }

    pub fn next(&mut self) -> Prepared {
        if self.made.is_multiple_of(256) {
            self.filler.set_now(Utc::now());
        }
        self.made += 1;
        let shape = self.mix.pick(&mut self.rng);
        let user_agent = Population::user_agent(&mut self.rng);
        let pools = self.pools.clone();
        let mut body = Vec::new();
        let (method, path, records, auth) = match shape {
            Shape::Batch => {
                body.reserve(16 + self.batch * 440);
                body.extend_from_slice(br#"{"batch":["#);
                for i in 0..self.batch {
                    if i > 0 {
                        body.push(b',');
                    }
                    let t = Self::pick(&mut self.rng, &pools.native);
                    self.filler.write(t, &mut self.rng, &mut body);
                }
                body.extend_from_slice(b"]}");
                (Method::POST, "/v1/batch".to_owned(), self.batch, true)
            }
            Shape::Single => {
                let t = Self::pick(&mut self.rng, &pools.single);
                self.filler.write(t, &mut self.rng, &mut body);
                (Method::POST, "/v1/events".to_owned(), 1, true)
            }
            Shape::Segment => {
                let (path, t) = Self::pick(&mut self.rng, &pools.segment);
                self.filler.write(t, &mut self.rng, &mut body);
                (Method::POST, (*path).to_owned(), 1, true)
            }
            Shape::Pixel => {
                let mut query = Vec::new();
                let t = Self::pick(&mut self.rng, &pools.pixel);
                self.filler.write(t, &mut self.rng, &mut query);
                (Method::GET, String::from_utf8(query).unwrap_or_default(), 1, false)
            }
            Shape::Redirect => {
                let code = if self.link_codes.is_empty() { "missing" } else { Self::pick(&mut self.rng, &self.link_codes).as_str() };
                (Method::GET, format!("/l/{code}"), 1, false)
            }
        };
        Prepared {
            shape,
            method,
            path,
            body: Bytes::from(body),
            records,
            authorization: auth.then(|| self.authorization.clone()),
            host: self.host.clone(),
            user_agent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_with_and_without_weights() {
        assert_eq!("batch".parse::<Mix>(), Ok(Mix(vec![(Shape::Batch, 1)])));
        assert_eq!("pixel=3, redirect=1".parse::<Mix>(), Ok(Mix(vec![(Shape::Pixel, 3), (Shape::Redirect, 1)])));
        assert_eq!("realistic".parse::<Mix>(), Ok(Mix::realistic()));
        let e = "pixle".parse::<Mix>().expect_err("a typo is refused");
        assert!(e.contains("unknown shape `pixle`"), "{e}");
        assert!("batch=0".parse::<Mix>().is_err());
        assert!("batch=x".parse::<Mix>().is_err());
    }

    #[test]
    fn picks_follow_the_weights() {
        use rand::SeedableRng;
        let mix: Mix = "pixel=3,redirect=1".parse().expect("mix");
        let mut rng = SmallRng::seed_from_u64(9);
        let pixels = (0..40_000).filter(|_| mix.pick(&mut rng) == Shape::Pixel).count();
        // 3/4 expected; the binomial standard deviation over 40 000 draws is ~87.
        assert!((29_500..30_500).contains(&pixels), "{pixels}");
    }
}
