//! Write statements run together. On SQLite each statement is a round trip to the database's
//! thread, which costs more than most of the statements themselves; a script of several
//! statements is one (its parameters bound in order across them). PostgreSQL's extended
//! protocol takes one statement at a time, so there they run one after the other.

use std::fmt::Write as _;

use sqlx::AnyConnection;

use super::{
    Result,
    writer::{Arg, bind_arg},
};

/// Rows per multi-row statement: well under SQLite's and PostgreSQL's bound-parameter limits.
pub(super) const ROWS_PER_STATEMENT: usize = 256;

/// Statements written with `?` parameters, and their arguments in order.
#[derive(Default)]
pub(super) struct Statements {
    statements: Vec<(String, Vec<Arg>)>,
}

impl Statements {
    pub(super) fn push(&mut self, sql: impl Into<String>, args: Vec<Arg>) {
        self.statements.push((sql.into(), args));
    }

    /// `head VALUES (?, ...), (?, ...) tail` for many rows, in statements of at most
    /// [`ROWS_PER_STATEMENT`] rows.
    pub(super) fn insert_rows(&mut self, head: &str, tail: &str, rows: Vec<Vec<Arg>>) {
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<Arg>> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
            let mut sql = format!("{head} VALUES ");
            for (i, row) in chunk.iter().enumerate() {
                sql.push_str(if i == 0 { "(" } else { ", (" });
                push_parameters(&mut sql, row.len());
                sql.push(')');
            }
            sql.push_str(tail);
            self.push(sql, chunk.into_iter().flatten().collect());
        }
    }

    /// Runs the statements in order; the first that fails stops the rest.
    pub(super) async fn run(self, conn: &mut AnyConnection) -> Result<()> {
        if self.statements.is_empty() {
            return Ok(());
        }
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            // SQLite binds anonymous parameters in order, at no cost per parameter (a numbered
            // one is looked up by walking the list of all, n^2 for a statement of n).
            let mut script = String::new();
            let mut args = Vec::new();
            for (sql, statement_args) in self.statements {
                script.push_str(&sql);
                script.push_str(";\n");
                args.extend(statement_args);
            }
            let mut query = sqlx::query(&script);
            for arg in args {
                query = bind_arg(query, arg);
            }
            query.execute(&mut *conn).await?;
            return Ok(());
        }
        for (sql, args) in self.statements {
            let sql = numbered(&sql);
            let mut query = sqlx::query(&sql);
            for arg in args {
                query = bind_arg(query, arg);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Appends `?, ?, ...`: `count` parameters.
pub(super) fn push_parameters(sql: &mut String, count: usize) {
    for i in 0..count {
        sql.push_str(if i == 0 { "?" } else { ", ?" });
    }
}

/// `?, ?` as PostgreSQL's `$1, $2`. The statements here hold no `?` but parameters.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + sql.len() / 4);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            // Writing to a String cannot fail.
            let _ = write!(out, "${n}");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_for_postgres() {
        assert_eq!(
            numbered("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
    }

    #[test]
    fn rows_are_split_into_statements() {
        let mut statements = Statements::default();
        let rows = (0..ROWS_PER_STATEMENT + 1)
            .map(|i| vec![Arg::Int(i64::try_from(i).unwrap_or_default())])
            .collect();
        statements.insert_rows("INSERT INTO t (a)", " ON CONFLICT DO NOTHING", rows);
        let sizes: Vec<usize> = statements
            .statements
            .iter()
            .map(|(_, args)| args.len())
            .collect();
        assert_eq!(sizes, [ROWS_PER_STATEMENT, 1]);
        assert_eq!(
            statements.statements[1].0,
            "INSERT INTO t (a) VALUES (?) ON CONFLICT DO NOTHING"
        );
    }
}
