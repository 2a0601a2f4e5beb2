//! Deterministic records: every calendar day has exactly `--per-day` "pedidos", and record
//! (day, index) depends only on (seed, day, index), so tests can recompute what was served.

use std::time::Duration;

use chrono::{Days, FixedOffset, NaiveDate, NaiveTime, SecondsFormat, TimeZone};
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::cli::{cli_enum, Args};

/// `numero` is `day * 100_000 + index`, so more per day would collide.
pub const MAX_PER_DAY: u64 = 100_000;
const LAST_MS_OF_DAY: u64 = 86_399_999;
/// rfc3339 offsets, cycled by record index.
const OFFSETS: [i32; 4] = [-3 * 3600, 0, 5 * 3600 + 1800, -10 * 3600];

cli_enum!(RecordDate {
    Iso = "iso",
    Br = "br",
    Rfc3339 = "rfc3339",
    Naive = "naive",
    Epoch = "epoch",
    EpochMs = "epoch_ms",
});

/// Field order is deliberately not alphabetical: clients must canonicalise before hashing.
#[derive(Serialize, Debug, Clone, PartialEq)]
struct Pedido {
    numero: i64,
    id: String,
    data_pedido: Value,
    situacao: &'static str,
    cliente: Cliente,
    valor_total: f64,
    itens: Vec<Item>,
    observacao: &'static str,
    atualizado_em: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
struct Cliente {
    nome: String,
    documento: String,
    email: String,
    cidade: &'static str,
    uf: &'static str,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
struct Item {
    sku: String,
    descricao: &'static str,
    quantidade: u64,
    preco: f64,
}

// Data tables, with accents on purpose: the ETL must keep UTF-8 intact.
#[rustfmt::skip]
const SITUACOES: [&str; 7] = [
    "aberto", "em separação", "faturado", "enviado", "entregue", "cancelado",
    "aguardando pagamento",
];
#[rustfmt::skip]
const NOMES: [&str; 10] = [
    "João", "Maria", "José", "Ana", "Luíza", "Antônio", "Conceição", "Paulo", "Fernanda", "Márcio",
];
#[rustfmt::skip]
const SOBRENOMES: [&str; 8] = [
    "Silva", "Gonçalves", "Araújo", "Souza", "Sá", "Pereira", "Magalhães", "Müller",
];
#[rustfmt::skip]
const CIDADES: [(&str, &str); 8] = [
    ("São Paulo", "SP"), ("Belém", "PA"), ("Florianópolis", "SC"), ("Goiânia", "GO"),
    ("Rio de Janeiro", "RJ"), ("Maringá", "PR"), ("Ribeirão Preto", "SP"), ("Porto Alegre", "RS"),
];
#[rustfmt::skip]
const PRODUTOS: [&str; 8] = [
    "Café torrado 500g", "Pão de queijo congelado 1kg", "Açúcar cristal 1kg", "Feijão carioca 1kg",
    "Guaraná 2L", "Farinha de mandioca 500g", "Doce de leite 400g", "Erva-mate chimarrão 1kg",
];
/// A few carry a quote, a newline or a backslash to exercise JSON escaping end to end.
const OBSERVACOES: [&str; 10] = [
    "",
    "Entregar em horário comercial, de segunda a sexta-feira.",
    "Cliente pediu \"urgente\" na etiqueta da embalagem.",
    "Portaria 2\nfalar com o zelador antes de subir.",
    "Nota fiscal em nome da empresa; CNPJ já consta no cadastro.",
    "Arquivo do pedido em C:\\pedidos\\entrada, conferir anexo.",
    "Presente — não incluir o preço na nota nem no pacote.",
    "Reagendado após tentativa de entrega sem sucesso.",
    "Retirar na loja; cliente avisado por telefone.",
    "Embalar os itens frágeis separadamente, com plástico-bolha.",
];

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Tiny deterministic stream seeded by (seed, day, index): never wall clock, never shared.
struct Mix(u64);

impl Mix {
    fn new(seed: u64, day: i64, index: u64) -> Self {
        Self(splitmix64(
            seed ^ splitmix64(day as u64 ^ splitmix64(index)),
        ))
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 = splitmix64(self.0);
        self.0 % n
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn epoch_2000() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default()
}

/// Milliseconds into the day: index 0 at 00:00:00.000, index 1 at 23:59:59.999, the rest in
/// between, so date filters at both day edges get exercised.
fn millis_of_day(index: u64, per_day: u64) -> u64 {
    match index {
        0 => 0,
        1 => LAST_MS_OF_DAY,
        i => (i - 1) * LAST_MS_OF_DAY / (per_day.max(3) - 1),
    }
}

fn record_date(style: RecordDate, day: NaiveDate, index: u64, per_day: u64) -> Value {
    let ms = millis_of_day(index, per_day);
    let local = day.and_time(NaiveTime::MIN) + Duration::from_millis(ms);
    match style {
        RecordDate::Iso => Value::from(day.format("%Y-%m-%d").to_string()),
        RecordDate::Br => Value::from(day.format("%d/%m/%Y").to_string()),
        RecordDate::Naive => Value::from(local.format("%Y-%m-%d %H:%M:%S").to_string()),
        RecordDate::Rfc3339 => {
            let offset = OFFSETS[(index % OFFSETS.len() as u64) as usize];
            let text = FixedOffset::east_opt(offset)
                .and_then(|tz| tz.from_local_datetime(&local).single())
                .map(|dt| dt.to_rfc3339_opts(SecondsFormat::AutoSi, false))
                .unwrap_or_default();
            Value::from(text)
        }
        RecordDate::Epoch => Value::from(local.and_utc().timestamp()),
        RecordDate::EpochMs => Value::from(local.and_utc().timestamp_millis()),
    }
}

fn make_record(args: &Args, day: NaiveDate, index: u64) -> Pedido {
    let day_no = (day - epoch_2000()).num_days();
    let mut mix = Mix::new(args.seed, day_no, index);
    let itens: Vec<Item> = (0..1 + mix.below(4))
        .map(|_| {
            let cents = 100 + mix.below(99_900);
            Item {
                sku: format!("SKU-{:05}", mix.below(100_000)),
                descricao: mix.pick(&PRODUTOS),
                quantidade: 1 + mix.below(12),
                preco: cents as f64 / 100.0,
            }
        })
        .collect();
    // Sum in cents so valor_total never grows more than 2 decimals.
    let total_cents: u64 = itens
        .iter()
        .map(|i| i.quantidade * (i.preco * 100.0).round() as u64)
        .sum();
    let (cidade, uf) = mix.pick(&CIDADES);
    let doc = mix.below(100_000_000_000);
    let updated_after = (mix.below(3) != 0).then(|| (1 + mix.below(5), mix.below(86_400)));
    let atualizado_em = updated_after.and_then(|(days, secs)| {
        let when = day.checked_add_days(Days::new(days))?;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        Some(format!(
            "{}T{h:02}:{m:02}:{s:02}-03:00",
            when.format("%Y-%m-%d")
        ))
    });
    Pedido {
        numero: day_no * MAX_PER_DAY as i64 + index as i64,
        id: format!("{}-{index}", day.format("%Y%m%d")),
        data_pedido: record_date(args.record_date, day, index, args.per_day),
        situacao: mix.pick(&SITUACOES),
        cliente: Cliente {
            nome: format!("{} {}", mix.pick(&NOMES), mix.pick(&SOBRENOMES)),
            documento: format!(
                "{:03}.{:03}.{:03}-{:02}",
                doc / 100_000_000 % 1000,
                doc / 100_000 % 1000,
                doc / 100 % 1000,
                doc % 100
            ),
            email: format!("cliente{:05}@exemplo.com.br", mix.below(100_000)),
            cidade,
            uf,
        },
        valor_total: total_cents as f64 / 100.0,
        itens,
        observacao: mix.pick(&OBSERVACOES),
        atualizado_em,
    }
}

/// Record at `pos` of the range ordered by (day, index); positions past the range simply
/// continue into later days (used by `endless`).
fn record_at(args: &Args, first: NaiveDate, pos: u64) -> Option<Pedido> {
    if args.per_day == 0 {
        return None;
    }
    let day = first.checked_add_days(Days::new(pos / args.per_day))?;
    Some(make_record(args, day, pos % args.per_day))
}

/// Positions `from..to` generated lazily while serialising, so a page costs only its size.
pub struct Records<'a> {
    pub args: &'a Args,
    pub first: NaiveDate,
    pub from: u64,
    pub to: u64,
    /// Each record as `{"pedido": record}`.
    pub wrapped: bool,
}

#[derive(Serialize)]
struct WrappedPedido {
    pedido: Pedido,
}

impl Serialize for Records<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let iter = (self.from..self.to).filter_map(|p| record_at(self.args, self.first, p));
        if self.wrapped {
            s.collect_seq(iter.map(|pedido| WrappedPedido { pedido }))
        } else {
            s.collect_seq(iter)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::test_args as args;
    use crate::range::{date, Span};

    #[test]
    fn page_spanning_two_days() {
        let a = args(&["--per-day", "50"]);
        let range = Span {
            first: date("2025-01-31"),
            days: 2,
        };
        let records = Records {
            args: &a,
            first: range.first,
            from: 30,
            to: 60,
            wrapped: false,
        };
        let value = serde_json::to_value(&records).expect("serialises");
        let ids: Vec<&str> = value
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        assert_eq!(ids.len(), 30);
        assert_eq!(ids[0], "20250131-30");
        assert_eq!(ids[19], "20250131-49");
        assert_eq!(ids[20], "20250201-0");
        assert_eq!(ids[29], "20250201-9");
        assert_eq!(range.total(a.per_day), 100);
        assert_eq!(100u64.div_ceil(30), 4);
    }

    #[test]
    fn records_are_deterministic() {
        let a = args(&[]);
        let one = make_record(&a, date("2025-03-04"), 7);
        let two = make_record(&a, date("2025-03-04"), 7);
        assert_eq!(one, two);
        let text = |p: &Pedido| serde_json::to_string(p).expect("serialises");
        assert_eq!(text(&one), text(&two));
        assert_ne!(one, make_record(&a, date("2025-03-04"), 8));
        assert_ne!(
            one,
            make_record(&args(&["--seed", "2"]), date("2025-03-04"), 7)
        );
        assert_eq!(one.numero, 9194 * 100_000 + 7);
        assert!(text(&one).starts_with("{\"numero\":"));
        let sizes: Vec<usize> = (0..200)
            .map(|i| text(&make_record(&a, date("2025-03-04"), i)).len())
            .collect();
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((450..=750).contains(&mean), "mean record size {mean}");
    }

    #[test]
    fn rfc3339_and_epoch_edges() {
        let day = date("2025-01-02");
        let rfc = |i| record_date(RecordDate::Rfc3339, day, i, 50);
        assert_eq!(rfc(0), "2025-01-02T00:00:00-03:00");
        assert_eq!(rfc(1), "2025-01-02T23:59:59.999+00:00");
        assert!(rfc(2).as_str().is_some_and(|s| s.ends_with("+05:30")));
        assert!(rfc(3).as_str().is_some_and(|s| s.ends_with("-10:00")));
        assert!(rfc(49)
            .as_str()
            .is_some_and(|s| s.starts_with("2025-01-02T23:")));
        let at = |style, i| record_date(style, day, i, 50);
        assert_eq!(at(RecordDate::Epoch, 0), 1_735_776_000);
        assert_eq!(at(RecordDate::Epoch, 1), 1_735_862_399);
        assert_eq!(at(RecordDate::EpochMs, 1), 1_735_862_399_999i64);
        assert_eq!(at(RecordDate::Naive, 1), "2025-01-02 23:59:59");
        assert_eq!(at(RecordDate::Br, 5), "02/01/2025");
        assert_eq!(at(RecordDate::Iso, 5), "2025-01-02");
        let mid: Vec<u64> = (0..50).map(|i| millis_of_day(i, 50)).collect();
        assert!(mid[2..]
            .windows(2)
            .all(|w| w[0] < w[1] && w[1] < LAST_MS_OF_DAY));
    }
}
