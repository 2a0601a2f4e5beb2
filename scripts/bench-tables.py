#!/usr/bin/env python3
"""The floor under a fleet of many pairs: what PostgreSQL itself takes to
create N raw tables (atlas's exact DDL) and COPY a day of ROWS records into
each (the first night), then, from new sessions, the next night of a sync:
the lookback day sent again (`INSERT … ON CONFLICT DO NOTHING`, every row
already stored) and a new day by COPY, one transaction each as atlas's
slices have; by STREAMS concurrent `psql` sessions. No HTTP, no ledger: only
what the server must do.

    scripts/bench-tables.py URL [N] [ROWS] [STREAMS]

Prints the seconds and pairs/s of each night. Uses (and drops) the database
atlas_bench_tables on URL's server.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse

DDL = """CREATE TABLE "{t}" (
    id BIGSERIAL PRIMARY KEY,
    data_coleta TIMESTAMP DEFAULT NOW() NOT NULL,
    data_referencia DATE NOT NULL,
    payload JSONB NOT NULL,
    hash_conteudo TEXT,
    CONSTRAINT "{t}_hash_conteudo_key" UNIQUE (hash_conteudo)
);
CREATE INDEX "idx_{t}_data_ref" ON "{t}" (data_referencia);
"""


def record(day, i):
    """A record shaped and sized as the sample API's (about 530 bytes)."""
    return {
        "numero": 919100000 + i, "id": f"{day}-{i}", "data_pedido": day, "situacao": "cancelado",
        "cliente": {"nome": "José Pereira", "documento": "477.738.927-22",
                    "email": f"cliente{i}@exemplo.com.br", "cidade": "São Paulo", "uf": "SP"},
        "valor_total": 3587.68,
        "itens": [{"sku": f"SKU-{i}", "descricao": "Feijão carioca 1kg", "quantidade": 4, "preco": 485.41},
                  {"sku": f"SKU-{i + 1}", "descricao": "Doce de leite 400g", "quantidade": 2, "preco": 823.02}],
        "observacao": "", "atualizado_em": f"{day}T20:36:50-03:00",
    }


def copy_block(t, day, rows, salt):
    out = [f'BEGIN;\nCOPY "{t}" (data_referencia, payload, hash_conteudo) FROM STDIN;\n']
    for i in range(rows):
        payload = json.dumps(record(day, i), ensure_ascii=False).replace("\\", "\\\\")
        out.append(f"{day}\t{payload}\t{salt}-{t}-{day}-{i:04d}\n")
    out.append("\\.\nCOMMIT;\n")
    return "".join(out)


def reload_block(t, day, rows, salt):
    """The lookback day again: every row already stored, none inserted."""
    values = []
    for i in range(rows):
        payload = json.dumps(record(day, i), ensure_ascii=False).replace("'", "''")
        values.append(f"('{day}', '{payload}', '{salt}-{t}-{day}-{i:04d}')")
    return (f'BEGIN;\nINSERT INTO "{t}" (data_referencia, payload, hash_conteudo) VALUES\n'
            + ",\n".join(values) + "\nON CONFLICT (hash_conteudo) DO NOTHING;\nCOMMIT;\n")


def run(url, files):
    t0 = time.time()
    procs = [subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-f", f],
                              stdout=subprocess.DEVNULL) for f in files]
    if any(p.wait() != 0 for p in procs):
        sys.exit("psql failed")
    return time.time() - t0


def main():
    url = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    streams = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    admin = ["psql", "-X", "-q", url, "-c"]
    subprocess.run(admin + ["DROP DATABASE IF EXISTS atlas_bench_tables WITH (FORCE)"], check=True)
    subprocess.run(admin + ["CREATE DATABASE atlas_bench_tables"], check=True)
    u = urllib.parse.urlsplit(url)
    db = urllib.parse.urlunsplit(u._replace(path="/atlas_bench_tables"))
    tables = [f"dados_raw_cliente_{1000 + i // 2}_{'notas' if i % 2 else 'pedidos'}" for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        def scripts(night):
            files = []
            for s in range(streams):
                path = os.path.join(tmp, f"{night}-{s}.sql")
                with open(path, "w") as f:
                    for t in tables[s::streams]:
                        if night == "first":
                            f.write(DDL.format(t=t))
                            f.write(copy_block(t, "2025-03-01", rows, "a"))
                        else:
                            f.write(reload_block(t, "2025-03-01", rows, "a"))
                            f.write(copy_block(t, "2025-03-02", rows, "b"))
                files.append(path)
            return files
        first, nxt = scripts("first"), scripts("next")
        a = run(db, first)
        b = run(db, nxt)
    subprocess.run(admin + ["DROP DATABASE IF EXISTS atlas_bench_tables WITH (FORCE)"], check=True)
    print(f"floor, {n} tables x {rows} rows, {streams} psql streams: "
          f"first night (create + COPY) {a:.2f} s, {n / a:.0f} pairs/s; "
          f"next night (lookback day again + COPY) {b:.2f} s, {n / b:.0f} pairs/s, "
          f"{2 * n / b:.0f} slices/s")


if __name__ == "__main__":
    main()
