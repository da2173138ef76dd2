//! `MembersTx` (members, invitations, teams, custom roles, child workspaces), written once for
//! both backends like `sql.rs`. Every statement filters by the transaction's workspace id (the
//! application layer of TEN-2); on PostgreSQL RLS filters again underneath.

/// The columns `MemberRow` maps, from `members m`.
macro_rules! member_columns {
    () => {
        "m.workspace_id, m.id, m.user_id, m.role, m.custom_role_id, m.active, m.created_at, m.updated_at"
    };
}

/// Member reads with their user: `MemberViewRow`'s columns, from `$from` (which joins
/// `members m` and `users u`), then `$tail`.
macro_rules! member_view_select {
    ($from:literal, $tail:literal) => {
        concat!(
            "SELECT ",
            member_columns!(),
            ", u.email, u.name FROM ",
            $from,
            " ",
            $tail
        )
    };
}

pub(crate) const MEMBER_GET: &str = member_view_select!(
    "members m JOIN users u ON u.id = m.user_id",
    "WHERE m.workspace_id = $1 AND m.id = $2"
);
pub(crate) const MEMBERS_LIST: &str = member_view_select!(
    "members m JOIN users u ON u.id = m.user_id",
    "WHERE m.workspace_id = $1 AND m.id > $2 ORDER BY m.id LIMIT $3"
);
pub(crate) const TEAM_MEMBERS: &str = member_view_select!(
    "team_members tm JOIN members m ON m.workspace_id = tm.workspace_id AND m.id = tm.member_id \
     JOIN users u ON u.id = m.user_id",
    "WHERE tm.workspace_id = $1 AND tm.team_id = $2 AND tm.member_id > $3 ORDER BY tm.member_id LIMIT $4"
);
pub(crate) const MEMBER_OF_USER: &str = concat!(
    "SELECT ",
    member_columns!(),
    " FROM members m WHERE m.workspace_id = $1 AND m.user_id = $2"
);

/// Invitation reads: the columns `InvitationRow` maps, then the condition `$where`.
macro_rules! invitation_select {
    ($where:literal) => {
        concat!(
            "SELECT workspace_id, id, email, role, custom_role_id, token_hash, invited_by, created_at, expires_at, \
             accepted_at, accepted_by, revoked_at FROM invitations WHERE ",
            $where
        )
    };
}

pub(crate) const INVITATION_GET: &str = invitation_select!("workspace_id = $1 AND id = $2");
/// `$2` is the cursor (`~` sorts after every id).
pub(crate) const INVITATIONS_LIST: &str =
    invitation_select!("workspace_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3");
/// Any workspace's: for `SystemTx::invitation_by_token`.
pub(crate) const INVITATION_BY_TOKEN: &str = invitation_select!("token_hash = $1");

/// Team reads: the columns `TeamRow` maps, then the condition `$where`.
macro_rules! team_select {
    ($where:literal) => {
        concat!(
            "SELECT workspace_id, id, name, description, grants, created_at, updated_at FROM teams WHERE ",
            $where
        )
    };
}

pub(crate) const TEAM_GET: &str = team_select!("workspace_id = $1 AND id = $2");
pub(crate) const TEAMS_LIST: &str =
    team_select!("workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3");

/// Custom role reads: the columns `CustomRoleRow` maps, then the condition `$where`.
macro_rules! custom_role_select {
    ($where:literal) => {
        concat!(
            "SELECT workspace_id, id, name, description, base_role, permissions, fields, created_at, updated_at \
             FROM custom_roles WHERE ",
            $where
        )
    };
}

/// Also the membership check's read of the role a member holds.
pub(crate) const CUSTOM_ROLE_GET: &str = custom_role_select!("workspace_id = $1 AND id = $2");
pub(crate) const CUSTOM_ROLES_LIST: &str =
    custom_role_select!("workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3");

/// Children of the workspace `$1` that are not deleted.
pub(crate) const CHILDREN_LIST: &str = crate::sql::workspace_select!(
    "WHERE w.parent_id = $1 AND w.deleted_at IS NULL AND w.id > $2 ORDER BY w.id LIMIT $3"
);
pub(crate) const CHILD_GET: &str = crate::sql::workspace_select!(
    "WHERE w.parent_id = $1 AND w.deleted_at IS NULL AND (w.id = $2 OR w.slug = $2)"
);

/// Implements `MembersTx` for `SqlTx<$db>`; its helpers `in_scope`, `one` and `page` serve
/// `impl_api_keys_tx!` too.
macro_rules! impl_members_tx {
    ($db:ty) => {
        mod members_tx {
        use palisade_core::ids::{CustomRoleId, InvitationId, MemberId, TeamId, UserId, WorkspaceId};
        use palisade_core::store::{MembersTx, StoreResult};
        use palisade_core::workspaces::model::{CustomRole, Invitation, Member, MemberView, Team, Workspace};
        use sqlx::types::Json;
        use time::OffsetDateTime;

        use crate::rows::{CustomRoleRow, InvitationRow, MemberRow, MemberViewRow, TeamRow, WorkspaceRow, corrupt};
        use crate::sql::{SqlTx, map_err};
        use crate::sql_members as q;

        fn count(table: &'static str, n: i64) -> StoreResult<u64> {
            u64::try_from(n).map_err(|_| corrupt(table, "negative count"))
        }

        /// An update by key matched its row; none means the caller's read was not of this scope.
        fn updated_one(table: &'static str, rows: u64) -> StoreResult<()> {
            if rows == 1 {
                Ok(())
            } else {
                Err(corrupt(table, "update matched no row in scope"))
            }
        }

        /// Refuses a value of another workspace before any SQL runs.
        pub(super) fn in_scope(tx: &SqlTx<$db>, table: &'static str, workspace: &WorkspaceId) -> StoreResult<String> {
            let ws = tx.workspace()?;
            if workspace.as_str() != ws {
                return Err(corrupt(table, "write outside the scope's workspace"));
            }
            Ok(ws.to_owned())
        }

        /// The row of this workspace whose key is `key` (`$1` the workspace, `$2` the key).
        pub(super) async fn one<R>(tx: &mut SqlTx<$db>, sql: &'static str, key: &str) -> StoreResult<Option<R>>
        where
            R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
        {
            let ws = tx.workspace()?.to_owned();
            sqlx::query_as::<_, R>(sql)
                .bind(ws)
                .bind(key.to_owned())
                .fetch_optional(&mut *tx.tx)
                .await
                .map_err(map_err)
        }

        /// A page of this workspace's rows (`$1` the workspace, `$2` the cursor, `$3` the limit).
        pub(super) async fn page<R>(tx: &mut SqlTx<$db>, sql: &'static str, cursor: &str, limit: u32) -> StoreResult<Vec<R>>
        where
            R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
        {
            let ws = tx.workspace()?.to_owned();
            sqlx::query_as::<_, R>(sql)
                .bind(ws)
                .bind(cursor.to_owned())
                .bind(i64::from(limit))
                .fetch_all(&mut *tx.tx)
                .await
                .map_err(map_err)
        }

        /// `COUNT(*)` of this workspace's rows (`$1` the workspace, `$2` the key if any).
        async fn count_in(tx: &mut SqlTx<$db>, table: &'static str, sql: &'static str, key: Option<&str>) -> StoreResult<u64> {
            let ws = tx.workspace()?.to_owned();
            let mut query = sqlx::query_scalar(sql).bind(ws);
            if let Some(key) = key {
                query = query.bind(key.to_owned());
            }
            let n: i64 = query.fetch_one(&mut *tx.tx).await.map_err(map_err)?;
            count(table, n)
        }

        #[async_trait::async_trait]
        impl MembersTx for SqlTx<$db> {
            async fn member_get(&mut self, id: &MemberId) -> StoreResult<Option<MemberView>> {
                let row: Option<MemberViewRow> = one(self, q::MEMBER_GET, id.as_str()).await?;
                row.map(MemberViewRow::into_view).transpose()
            }

            async fn member_of_user(&mut self, user: &UserId) -> StoreResult<Option<Member>> {
                let row: Option<MemberRow> = one(self, q::MEMBER_OF_USER, user.as_str()).await?;
                row.map(MemberRow::into_member).transpose()
            }

            async fn members_list(&mut self, after: Option<&MemberId>, limit: u32) -> StoreResult<Vec<MemberView>> {
                let rows: Vec<MemberViewRow> = page(self, q::MEMBERS_LIST, after.map_or("", MemberId::as_str), limit).await?;
                rows.into_iter().map(MemberViewRow::into_view).collect()
            }

            async fn member_update(&mut self, m: &Member) -> StoreResult<()> {
                let ws = in_scope(self, "members", &m.workspace_id)?;
                let done = sqlx::query(
                    "UPDATE members SET role = $3, custom_role_id = $4, active = $5, updated_at = $6 WHERE workspace_id = $1 AND id = $2",
                )
                .bind(ws)
                .bind(m.id.as_str())
                .bind(m.role.as_str())
                .bind(m.custom_role_id.as_ref().map(CustomRoleId::as_str))
                .bind(m.active)
                .bind(m.updated_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                updated_one("members", done.rows_affected())
            }

            async fn member_delete(&mut self, id: &MemberId) -> StoreResult<bool> {
                let ws = self.workspace()?.to_owned();
                sqlx::query("DELETE FROM team_members WHERE workspace_id = $1 AND member_id = $2")
                    .bind(&ws)
                    .bind(id.as_str())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                let done = sqlx::query("DELETE FROM members WHERE workspace_id = $1 AND id = $2")
                    .bind(&ws)
                    .bind(id.as_str())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn owners_active(&mut self) -> StoreResult<u64> {
                count_in(self, "members", "SELECT COUNT(*) FROM members WHERE workspace_id = $1 AND role = 'owner' AND active", None).await
            }

            async fn members_with_custom_role(&mut self, id: &CustomRoleId) -> StoreResult<u64> {
                count_in(self, "members", "SELECT COUNT(*) FROM members WHERE workspace_id = $1 AND custom_role_id = $2", Some(id.as_str())).await
            }

            async fn invitation_insert(&mut self, i: &Invitation) -> StoreResult<()> {
                let ws = in_scope(self, "invitations", &i.workspace_id)?;
                sqlx::query(
                    "INSERT INTO invitations (workspace_id, id, email, role, custom_role_id, token_hash, invited_by, created_at, expires_at, \
                     accepted_at, accepted_by, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(ws)
                .bind(i.id.as_str())
                .bind(&i.email)
                .bind(i.role.as_str())
                .bind(i.custom_role_id.as_ref().map(CustomRoleId::as_str))
                .bind(&i.token_hash[..])
                .bind(i.invited_by.as_str())
                .bind(i.created_at)
                .bind(i.expires_at)
                .bind(i.accepted_at)
                .bind(i.accepted_by.as_ref().map(UserId::as_str))
                .bind(i.revoked_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn invitation_get(&mut self, id: &InvitationId) -> StoreResult<Option<Invitation>> {
                let row: Option<InvitationRow> = one(self, q::INVITATION_GET, id.as_str()).await?;
                row.map(InvitationRow::into_invitation).transpose()
            }

            async fn invitations_list(&mut self, before: Option<&InvitationId>, limit: u32) -> StoreResult<Vec<Invitation>> {
                let rows: Vec<InvitationRow> = page(self, q::INVITATIONS_LIST, before.map_or("~", InvitationId::as_str), limit).await?;
                rows.into_iter().map(InvitationRow::into_invitation).collect()
            }

            async fn invitations_revoke_open(&mut self, email: &str, at: OffsetDateTime) -> StoreResult<Vec<InvitationId>> {
                let ws = self.workspace()?.to_owned();
                let ids: Vec<String> = sqlx::query_scalar(
                    "UPDATE invitations SET revoked_at = $3 WHERE workspace_id = $1 AND email = $2 \
                     AND accepted_at IS NULL AND revoked_at IS NULL RETURNING id",
                )
                .bind(ws)
                .bind(email)
                .bind(at)
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)?;
                let mut ids: Vec<InvitationId> = ids.into_iter().map(InvitationId::from_trusted).collect();
                ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                Ok(ids)
            }

            async fn invitation_revoke(&mut self, id: &InvitationId, at: OffsetDateTime) -> StoreResult<bool> {
                let ws = self.workspace()?.to_owned();
                let done = sqlx::query(
                    "UPDATE invitations SET revoked_at = $3 WHERE workspace_id = $1 AND id = $2 \
                     AND accepted_at IS NULL AND revoked_at IS NULL",
                )
                .bind(ws)
                .bind(id.as_str())
                .bind(at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn invitation_accept(&mut self, id: &InvitationId, user: &UserId, at: OffsetDateTime) -> StoreResult<bool> {
                let ws = self.workspace()?.to_owned();
                let done = sqlx::query(
                    "UPDATE invitations SET accepted_at = $3, accepted_by = $4 WHERE workspace_id = $1 AND id = $2 \
                     AND accepted_at IS NULL AND revoked_at IS NULL",
                )
                .bind(ws)
                .bind(id.as_str())
                .bind(at)
                .bind(user.as_str())
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn invitations_with_custom_role(&mut self, id: &CustomRoleId) -> StoreResult<u64> {
                count_in(self, "invitations", "SELECT COUNT(*) FROM invitations WHERE workspace_id = $1 AND custom_role_id = $2 \
                     AND accepted_at IS NULL AND revoked_at IS NULL", Some(id.as_str())).await
            }

            async fn team_insert(&mut self, t: &Team) -> StoreResult<()> {
                let ws = in_scope(self, "teams", &t.workspace_id)?;
                sqlx::query(
                    "INSERT INTO teams (workspace_id, id, name, description, grants, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(ws)
                .bind(t.id.as_str())
                .bind(&t.name)
                .bind(t.description.as_deref())
                .bind(Json(&t.grants))
                .bind(t.created_at)
                .bind(t.updated_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn team_get(&mut self, id: &TeamId) -> StoreResult<Option<Team>> {
                let row: Option<TeamRow> = one(self, q::TEAM_GET, id.as_str()).await?;
                Ok(row.map(Team::from))
            }

            async fn teams_list(&mut self, after: Option<&TeamId>, limit: u32) -> StoreResult<Vec<Team>> {
                let rows: Vec<TeamRow> = page(self, q::TEAMS_LIST, after.map_or("", TeamId::as_str), limit).await?;
                Ok(rows.into_iter().map(Team::from).collect())
            }

            async fn team_update(&mut self, t: &Team) -> StoreResult<()> {
                let ws = in_scope(self, "teams", &t.workspace_id)?;
                let done = sqlx::query(
                    "UPDATE teams SET name = $3, description = $4, grants = $5, updated_at = $6 WHERE workspace_id = $1 AND id = $2",
                )
                .bind(ws)
                .bind(t.id.as_str())
                .bind(&t.name)
                .bind(t.description.as_deref())
                .bind(Json(&t.grants))
                .bind(t.updated_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                updated_one("teams", done.rows_affected())
            }

            async fn team_delete(&mut self, id: &TeamId) -> StoreResult<bool> {
                let ws = self.workspace()?.to_owned();
                sqlx::query("DELETE FROM team_members WHERE workspace_id = $1 AND team_id = $2")
                    .bind(&ws)
                    .bind(id.as_str())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                let done = sqlx::query("DELETE FROM teams WHERE workspace_id = $1 AND id = $2")
                    .bind(&ws)
                    .bind(id.as_str())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn team_member_add(&mut self, team: &TeamId, m: &Member, at: OffsetDateTime) -> StoreResult<bool> {
                let ws = in_scope(self, "team_members", &m.workspace_id)?;
                let done = sqlx::query(
                    "INSERT INTO team_members (workspace_id, team_id, member_id, user_id, added_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(ws)
                .bind(team.as_str())
                .bind(m.id.as_str())
                .bind(m.user_id.as_str())
                .bind(at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn team_member_remove(&mut self, team: &TeamId, member: &MemberId) -> StoreResult<bool> {
                let ws = self.workspace()?.to_owned();
                let done = sqlx::query("DELETE FROM team_members WHERE workspace_id = $1 AND team_id = $2 AND member_id = $3")
                    .bind(ws)
                    .bind(team.as_str())
                    .bind(member.as_str())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn team_members(&mut self, team: &TeamId, after: Option<&MemberId>, limit: u32) -> StoreResult<Vec<MemberView>> {
                let ws = self.workspace()?.to_owned();
                let rows = sqlx::query_as::<_, MemberViewRow>(q::TEAM_MEMBERS)
                    .bind(ws)
                    .bind(team.as_str())
                    .bind(after.map_or("", MemberId::as_str))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                rows.into_iter().map(MemberViewRow::into_view).collect()
            }

            async fn custom_role_insert(&mut self, r: &CustomRole) -> StoreResult<()> {
                let ws = in_scope(self, "custom_roles", &r.workspace_id)?;
                sqlx::query(
                    "INSERT INTO custom_roles (workspace_id, id, name, description, base_role, permissions, fields, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(ws)
                .bind(r.id.as_str())
                .bind(&r.name)
                .bind(r.description.as_deref())
                .bind(r.base_role.as_str())
                .bind(Json(&r.permissions))
                .bind(Json(&r.fields))
                .bind(r.created_at)
                .bind(r.updated_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn custom_role_get(&mut self, id: &CustomRoleId) -> StoreResult<Option<CustomRole>> {
                let row: Option<CustomRoleRow> = one(self, q::CUSTOM_ROLE_GET, id.as_str()).await?;
                row.map(CustomRoleRow::into_role).transpose()
            }

            async fn custom_roles_list(&mut self, after: Option<&CustomRoleId>, limit: u32) -> StoreResult<Vec<CustomRole>> {
                let rows: Vec<CustomRoleRow> = page(self, q::CUSTOM_ROLES_LIST, after.map_or("", CustomRoleId::as_str), limit).await?;
                rows.into_iter().map(CustomRoleRow::into_role).collect()
            }

            async fn custom_role_update(&mut self, r: &CustomRole) -> StoreResult<()> {
                let ws = in_scope(self, "custom_roles", &r.workspace_id)?;
                let done = sqlx::query(
                    "UPDATE custom_roles SET name = $3, description = $4, base_role = $5, permissions = $6, fields = $7, updated_at = $8 \
                     WHERE workspace_id = $1 AND id = $2",
                )
                .bind(ws)
                .bind(r.id.as_str())
                .bind(&r.name)
                .bind(r.description.as_deref())
                .bind(r.base_role.as_str())
                .bind(Json(&r.permissions))
                .bind(Json(&r.fields))
                .bind(r.updated_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                updated_one("custom_roles", done.rows_affected())
            }

            async fn custom_role_delete(&mut self, id: &CustomRoleId) -> StoreResult<bool> {
                let ws = self.workspace()?.to_owned();
                let done = sqlx::query("DELETE FROM custom_roles WHERE workspace_id = $1 AND id = $2")
                    .bind(ws)
                    .bind(id.as_str())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn children_list(&mut self, after: Option<&WorkspaceId>, limit: u32) -> StoreResult<Vec<Workspace>> {
                let rows: Vec<WorkspaceRow> = page(self, q::CHILDREN_LIST, after.map_or("", WorkspaceId::as_str), limit).await?;
                rows.into_iter().map(WorkspaceRow::into_workspace).collect()
            }

            async fn child_get(&mut self, key: &str) -> StoreResult<Option<Workspace>> {
                let row: Option<WorkspaceRow> = one(self, q::CHILD_GET, key).await?;
                row.map(WorkspaceRow::into_workspace).transpose()
            }

            async fn children_count(&mut self) -> StoreResult<u64> {
                count_in(self, "workspaces", "SELECT COUNT(*) FROM workspaces WHERE parent_id = $1 AND deleted_at IS NULL", None).await
            }
        }
        }
    };
}

pub(crate) use impl_members_tx;
